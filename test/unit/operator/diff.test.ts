import {
  APPLIED_ANNOTATION,
  isSubset,
  needsApply,
  parseQuantity,
  withAppliedHash,
} from '../../../operator/runtime/diff.js';
import type { KubeObject } from '../../../operator/runtime/kube.js';
import { mergeRules } from '../../../operator/runtime/rbac.js';

const desired: KubeObject = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'x', namespace: 'ns', labels: { a: 'b' } },
  data: { 'relay.yaml': 'hostname: x\n' },
};

describe('needsApply', () => {
  it('is false when the live object carries our hash and every desired field (server additions tolerated)', () => {
    const d = withAppliedHash(desired);
    const live = {
      ...d,
      metadata: {
        ...d.metadata,
        uid: 'u',
        resourceVersion: '5',
        managedFields: [{}],
        annotations: { ...d.metadata!.annotations, other: 'x' },
      },
    };
    expect(needsApply(d, live)).toBe(false);
  });

  it('is true when absent, when the hash differs (a field we stopped setting) or on drift', () => {
    const d = withAppliedHash(desired);
    expect(needsApply(d, undefined)).toBe(true);
    const old = withAppliedHash({ ...desired, data: { ...(desired.data as object), extra: 'y' } });
    expect(needsApply(d, old)).toBe(true);
    const drifted = { ...d, data: { 'relay.yaml': 'edited by hand' } };
    expect(needsApply(d, drifted)).toBe(true);
    expect(d.metadata!.annotations![APPLIED_ANNOTATION]).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('isSubset', () => {
  it('treats empty maps and lists as absent, compares lists by position and quantities by value', () => {
    expect(isSubset({ a: {}, b: [] }, {})).toBe(true);
    expect(isSubset({ l: [{ n: 1 }] }, { l: [{ n: 1, defaulted: 'x' }] })).toBe(true);
    expect(isSubset({ l: [{ n: 1 }] }, { l: [{ n: 1 }, { n: 2 }] })).toBe(false);
    expect(isSubset({ cpu: '0.5' }, { cpu: '500m' })).toBe(true);
    expect(isSubset({ mem: '1Gi' }, { mem: '1073741824' })).toBe(true);
    expect(isSubset({ mem: '1Gi' }, { mem: '1G' })).toBe(false);
    expect(isSubset({ s: 'a' }, { s: 'b' })).toBe(false);
  });

  it('parses quantities', () => {
    expect(parseQuantity('100m')).toBe(0.1);
    expect(parseQuantity('2Ki')).toBe(2048);
    expect(parseQuantity('1e3')).toBe(1000);
    expect(parseQuantity('abc')).toBeUndefined();
  });
});

describe('mergeRules', () => {
  it('unions verbs per resource and groups resources with the same verbs', () => {
    const rules = mergeRules([
      { apiGroups: [''], resources: ['secrets', 'configmaps'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['watch'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['watch'] },
      { apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['patch', 'get'] },
    ]);
    expect(rules).toEqual([
      { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['get', 'patch'] },
    ]);
  });
});
