// Images are per node: the receiving daemon imports into its own store, then records the fact.
import { randomUUID } from "node:crypto";
import type { EventStore } from "../events/store.js";
import { imageSubject, type Meta } from "../events/types.js";
import { conflict, notFound } from "../shared/errors.js";
import type { Projector } from "../projections/projector.js";
import type { ImageRecord } from "../shared/host-facts.js";
import { ctxFromMeta, envelope } from "./command-service.js";
import type { ImageStorePort } from "./ports.js";


export class ImageService {
  constructor(
    private readonly node: string,
    private readonly store: EventStore,
    private readonly projector: Projector,
    private readonly images: ImageStorePort,
  ) {}

  async import(source: string, name: string | undefined, o: { meta?: Meta } = {}): Promise<{ name: string; digest: string }> {
    const img = await this.images.import(source, name);
    await this.record(img, o.meta);
    return { name: img.name, digest: img.digest };
  }

  /** Make the log know an image that is on disk (the seed image, or one imported before). */
  async record(img: ImageRecord, meta?: Meta): Promise<void> {
    const known = this.projector.model.image(this.node, img.name);
    if (known && known.digest === img.digest) return;
    const ctx = ctxFromMeta(this.node, meta, `berth/${this.node}`);
    const ev = envelope(
      { type: "ImageImported", data: { name: img.name, digest: img.digest, sizeBytes: img.sizeBytes, config: img.config } },
      ctx,
      randomUUID(),
    );
    const seq = await this.store.append(imageSubject(img.digest), ev);
    await this.projector.waitForSeq(seq);
  }

  async remove(name: string, o: { meta?: Meta } = {}): Promise<{ name: string }> {
    const model = this.projector.model;
    const img = model.image(this.node, name);
    if (!img) throw notFound(`no image '${name}' on node ${this.node}`);
    for (const c of model.containers.values()) {
      if (c.node === this.node && c.imageDigest === img.digest) {
        throw conflict(`image '${img.name}' is used by container ${c.name}`);
      }
    }
    await this.images.remove(img.name);
    const ctx = ctxFromMeta(this.node, o.meta, "anonymous");
    const seq = await this.store.append(
      imageSubject(img.digest),
      envelope({ type: "ImageRemoved", data: { name: img.name, digest: img.digest } }, ctx, randomUUID()),
    );
    await this.projector.waitForSeq(seq);
    return { name: img.name };
  }
}
