// import() of a module outside the CLI bundle (the daemon, node:https). bin/berth runs the bundle
// through node:vm from a V8 code cache, and Node 20 loses a vm script's import() callback when
// the script comes from a cache (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING); so bin/berth, a module
// Node loaded itself, hands over its own import(). Run any other way, this is plain import().
// (Modules inside the bundle may be import()ed as usual: esbuild inlines those.)
type Importer = (specifier: string) => Promise<unknown>;

export function importModule<T>(specifier: string): Promise<T> {
  const own = (globalThis as { __berthImport?: Importer }).__berthImport;
  return (own ? own(specifier) : import(specifier)) as Promise<T>;
}
