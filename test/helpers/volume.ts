/**
 * A directory laid out the way Kubernetes mounts a ConfigMap or Secret volume, for reload tests:
 *
 *   <dir>/..2026_11_24_03_00_00.123/cert.pem     the real files, one timestamped directory per version
 *   <dir>/..data -> ..2026_11_24_03_00_00.123    swapped atomically (rename) on every update
 *   <dir>/cert.pem -> ..data/cert.pem            what the application opens; never changes itself
 *
 * So an update never rewrites the file the application has open: only the `..data` symlink moves.
 * A watcher that looks at the path's own inode or mtime through lstat() misses it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export class ProjectedVolume {
  private version = 0;

  private constructor(readonly dir: string) {}

  /** Creates the volume with its first set of files. */
  static async create(dir: string, files: Record<string, string>): Promise<ProjectedVolume> {
    await fs.mkdir(dir, { recursive: true });
    const volume = new ProjectedVolume(dir);
    await volume.update(files);
    for (const name of Object.keys(files)) await fs.symlink(path.join('..data', name), path.join(dir, name));
    return volume;
  }

  /** Publishes a new version of every file at once, as the kubelet does. */
  async update(files: Record<string, string>): Promise<void> {
    const stamp = `..${new Date().toISOString().replace(/[-:T]/g, '_').replace('Z', '')}.${++this.version}`;
    const target = path.join(this.dir, stamp);
    await fs.mkdir(target);
    for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(target, name), content);
    const tmp = path.join(this.dir, '..data_tmp');
    await fs.symlink(stamp, tmp);
    await fs.rename(tmp, path.join(this.dir, '..data'));
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }
}
