/**
 * Where this process's cgroup is in the files it can see: /proc/self/cgroup names it, and
 * /proc/self/mountinfo says where each hierarchy is mounted (cgroups(7), proc(5)). Pure, so
 * tests hand it fixture text.
 */
import { dirname, join, relative } from 'node:path';
import type { ReadFile } from './read-file.js';

export interface Mount {
  readonly root: string;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly superOptions: readonly string[];
}

/** One line of /proc/self/cgroup: a v1 hierarchy with its controllers, or v2's "0::/path". */
export interface CgroupLine {
  readonly v2: boolean;
  readonly controllers: readonly string[];
  readonly path: string;
}

/** Parses /proc/self/cgroup: hierarchy-ID:controller-list:cgroup-path per line. */
export function parseCgroupLines(text: string): CgroupLine[] {
  const lines: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    // Not trimmed: a directory name may end in a space.
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.replace(/\r$/, ''));
    if (!m) continue;
    const [, id, controllers = '', path = '/'] = m;
    const v2 = id === '0' && controllers === '';
    lines.push({ v2, controllers: v2 ? [] : controllers.split(','), path });
  }
  return lines;
}

/** The mounts of the hierarchy that holds `line`: cgroup2, or the v1 ones with its controller. */
function mountsOf(mounts: readonly Mount[], line: CgroupLine, controller: string): Mount[] {
  return mounts.filter((mt) =>
    line.v2 ? mt.fsType === 'cgroup2' : mt.fsType === 'cgroup' && mt.superOptions.includes(controller),
  );
}

/** Parses /proc/self/mountinfo (proc(5)): fields 4 and 5, then fstype and super options after " - ". */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const [fsType, , options] = right.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (!root || !mountPoint || !fsType) continue;
    mounts.push({
      root: unescapeOctal(root),
      mountPoint: unescapeOctal(mountPoint),
      fsType,
      superOptions: (options ?? '').split(','),
    });
  }
  return mounts;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeOctal(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** Whether a mount whose root is `root` shows the cgroup at `cgroupPath` (at it or below it). */
function contains(root: string, cgroupPath: string): boolean {
  const rel = relative(root, cgroupPath);
  return rel !== '..' && !rel.startsWith('../');
}

/**
 * The mount of this hierarchy that shows the process's own cgroup, the deepest root first: a
 * container can also see other parts of the tree (a monitoring agent's bind of the host's
 * /sys/fs/cgroup), listed before its own. With none containing it, the first, read at its mount
 * point: an older Docker's bind of the container's cgroup under a path named after the host's.
 */
function mountFor(mounts: readonly Mount[], cgroupPath: string): Mount | undefined {
  let best: Mount | undefined;
  for (const mount of mounts) {
    if (mount.root.split('/').includes('..') || !contains(mount.root, cgroupPath)) continue;
    if (!best || mount.root.length > best.root.length) best = mount;
  }
  return best ?? mounts[0];
}

/** The directory of this process's cgroup inside the mount, or the mount point when it is not below it. */
function cgroupDir(mount: Mount, cgroupPath: string): string {
  return contains(mount.root, cgroupPath)
    ? join(mount.mountPoint, relative(mount.root, cgroupPath))
    : mount.mountPoint;
}

/** Where a hierarchy's files for the process's cgroup are, or why they cannot be found. */
export type Location =
  | { readonly mountPoint: string; readonly dir: string }
  | 'no mount'
  | 'outside namespace';

/** Pure: the directory of `line`'s cgroup for `controller`, and the mount point above it. */
export function locate(mounts: readonly Mount[], line: CgroupLine, controller: string): Location {
  const mount = mountFor(mountsOf(mounts, line, controller), line.path);
  if (!mount) return 'no mount';
  // Moved out of its cgroup namespace ("/../x"): no mount here shows its files, and the
  // namespace root's do not govern it.
  if (line.path.split('/').includes('..')) return 'outside namespace';
  return { mountPoint: mount.mountPoint, dir: cgroupDir(mount, line.path) };
}

/** `dir` and each cgroup above it up to `top`, its mount point: the limits of each also bind `dir`. */
export function* upToMount(dir: string, top: string): Generator<string> {
  for (let d = dir; ; d = dirname(d)) {
    yield d;
    if (d === top || !d.startsWith(top) || d === dirname(d)) return;
  }
}

/** Pure: where this process's memory cgroup is (the v1 hierarchy that lists memory, else v2), if found. */
export function memoryCgroup(
  read: ReadFile,
): { readonly v2: boolean; readonly dir: string; readonly mountPoint: string } | undefined {
  const cgroups = read('/proc/self/cgroup');
  const mountinfo = read('/proc/self/mountinfo');
  if (cgroups === undefined || mountinfo === undefined) return undefined;
  const lines = parseCgroupLines(cgroups);
  const line = lines.find((l) => !l.v2 && l.controllers.includes('memory')) ?? lines.find((l) => l.v2);
  if (!line) return undefined;
  const where = locate(parseMountinfo(mountinfo), line, 'memory');
  return typeof where === 'string' ? undefined : { v2: line.v2, ...where };
}
