import { RecentWrites, ReferenceIndex } from '../../../operator/shared/context.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const obj = (rv: string, data = 'x') => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 's', namespace: 'ns', resourceVersion: rv },
  data: { k: data },
});

describe('RecentWrites', () => {
  it('serves our write while the cache still shows the version it replaced, then the cache', () => {
    const clock = new FakeClock();
    const r = new RecentWrites(clock);
    r.remember(obj('2', 'mine'), obj('1'));
    expect(r.resolve('Secret', obj('1'), 'ns', 's')?.data).toEqual({ k: 'mine' });
    // The cache caught up (or moved past us): the cache wins from now on.
    expect(r.resolve('Secret', obj('2', 'mine'), 'ns', 's')?.metadata?.resourceVersion).toBe('2');
    expect(r.resolve('Secret', obj('1'), 'ns', 's')?.metadata?.resourceVersion).toBe('1');
  });

  it('covers creation (no cached object) and expires after a minute', () => {
    const clock = new FakeClock();
    const r = new RecentWrites(clock);
    r.remember(obj('5'), undefined);
    expect(r.resolve('Secret', undefined, 'ns', 's')?.metadata?.resourceVersion).toBe('5');
    clock.advance(61_000);
    expect(r.resolve('Secret', undefined, 'ns', 's')).toBeUndefined();
  });

  it('lets someone else’s newer version win', () => {
    const r = new RecentWrites(new FakeClock());
    r.remember(obj('2', 'mine'), obj('1'));
    expect(r.resolve('Secret', obj('3', 'theirs'), 'ns', 's')?.data).toEqual({ k: 'theirs' });
  });
});

describe('ReferenceIndex', () => {
  it('maps a Secret to the objects that read it, replacing an owner’s set on each reconcile', () => {
    const idx = new ReferenceIndex();
    idx.set('SmtpRelay:ns/a', ['ns/s1', 'ns/s2']);
    idx.set('MailDomain:ns/d', ['ns/s2']);
    expect(idx.owners('ns/s2').sort()).toEqual(['MailDomain:ns/d', 'SmtpRelay:ns/a']);
    idx.set('SmtpRelay:ns/a', ['ns/s3']);
    expect(idx.owners('ns/s1')).toEqual([]);
    expect(idx.owners('ns/s2')).toEqual(['MailDomain:ns/d']);
    idx.delete('MailDomain:ns/d');
    expect(idx.owners('ns/s2')).toEqual([]);
  });
});
