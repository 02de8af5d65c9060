/** A fixture tree for the pure /proc and /sys readers: absolute path → file text; anything else does not exist. */
export function fileTree(files: Record<string, string>): (path: string) => string | undefined {
  return (path) => files[path];
}
