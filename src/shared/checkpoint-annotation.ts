// The annotation that asks for a local checkpoint (issue 11), and its rule. A leaf like
// spec-rules.ts: create and update (of a container or a pod) check it where the spec comes in,
// the projection that keeps local copies reads it.
import { invalid } from "./errors.js";

export const CHECKPOINT_ANNOTATION = "berth.io/checkpoint";

/** Only the exact value "true" marks it; anything else (which the rule refuses on input) does not. */
export function wantsLocalCheckpoint(annotations: Readonly<Record<string, string>> | null | undefined): boolean {
  return annotations != null && Object.hasOwn(annotations, CHECKPOINT_ANNOTATION) && annotations[CHECKPOINT_ANNOTATION] === "true";
}

/**
 * InvalidArgument for any value of the annotation but "true" ("false", "True", "1", " true"…):
 * an almost-yes must not silently mean no for a container a node cannot live without. Turning it
 * off is removing the annotation.
 */
export function checkCheckpointAnnotation(annotations: Readonly<Record<string, string>> | null | undefined): void {
  if (annotations == null || !Object.hasOwn(annotations, CHECKPOINT_ANNOTATION)) return;
  const v: unknown = annotations[CHECKPOINT_ANNOTATION];
  if (v !== "true") {
    const shown = typeof v === "string" ? JSON.stringify(v.slice(0, 64)) : typeof v;
    throw invalid(`annotation '${CHECKPOINT_ANNOTATION}' must be "true" (got ${shown}); remove it to turn the local checkpoint off`);
  }
}
