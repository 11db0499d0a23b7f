/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- pokes at generated JSON */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { KINDS, buildCrd } from '../../../operator/api/crds.js';
import { generatedFiles } from '../../../operator/gen/files.js';
import { CLUSTER_RULES, rbacManifests } from '../../../operator/gen/rbac.js';
import { structuralProblems } from './structural.js';

const root = process.cwd();

describe('generated files', () => {
  it('are fresh: run `npm run generate` after changing operator/api or RBAC declarations', () => {
    const stale: string[] = [];
    for (const [rel, content] of generatedFiles()) {
      let onDisk: string;
      try {
        onDisk = readFileSync(join(root, rel), 'utf8');
      } catch {
        onDisk = '<missing>';
      }
      if (onDisk !== content) stale.push(rel);
    }
    expect(stale).toEqual([]);
  });
});

describe.each(KINDS.map((k) => [k.kind, k] as const))('%s CRD', (_kind, def) => {
  const crd = buildCrd(def) as any;
  const version = crd.spec.versions[0];
  const schema = version.schema.openAPIV3Schema;

  it('is structural and describes every field', () => {
    expect(structuralProblems(schema)).toEqual([]);
  });

  it('has short names, the mailfleet category, status subresource and printer columns', () => {
    expect(crd.spec.names.shortNames.length).toBeGreaterThan(0);
    expect(crd.spec.names.categories).toEqual(['mailfleet']);
    expect(version.subresources.status).toEqual({});
    expect(version.additionalPrinterColumns.map((c: any) => c.name)).toContain('Age');
    expect(crd.spec.scope).toBe('Namespaced');
  });

  it('round-trips through YAML unchanged', () => {
    expect(parse(generatedFiles().get(`crds/${def.plural}.mailfleet.dev.yaml`)!)).toEqual(crd);
  });
});

describe('SmtpRelay CRD specifics', () => {
  const crd = buildCrd(KINDS[0]!) as any;
  const v = crd.spec.versions[0];
  it('has the scale subresource for kubectl scale and HPA', () => {
    expect(v.subresources.scale).toEqual({
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
    expect(crd.spec.names.shortNames).toEqual(['smtpr']);
  });

  it('does not mark defaulted fields required, and carries CEL rules', () => {
    const spec = v.schema.openAPIV3Schema.properties.spec;
    expect(spec.required).toBeUndefined();
    expect(spec.properties.replicas.default).toBe(2);
    expect(spec.properties.tls['x-kubernetes-validations'][0].rule).toContain('secretName');
    expect(JSON.stringify(spec.properties.delivery)).toContain(
      "self.mode != 'smarthost' || has(self.smarthost)",
    );
    expect(v.schema.openAPIV3Schema['x-kubernetes-validations'][0].rule).toContain('metadata.name');
    expect(spec.properties.service['x-kubernetes-validations'][0].rule).toBe(
      "!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'",
    );
    const proxy = spec.properties.listeners.properties.submission.properties.proxyProtocol;
    expect(proxy.required).toEqual(['trustedProxies']);
    expect(proxy.properties.trustedProxies.minItems).toBe(1);
  });
});

describe('RBAC', () => {
  it('grants what the controllers declare and nothing cluster-wide beyond', () => {
    const find = (group: string, res: string) =>
      CLUSTER_RULES.find((r) => r.apiGroups.includes(group) && r.resources.includes(res));
    expect(find('apps', 'statefulsets')?.verbs).toEqual(
      expect.arrayContaining(['get', 'list', 'watch', 'patch', 'create']),
    );
    expect(find('mailfleet.dev', 'smtprelays/status')?.verbs).toContain('patch');
    expect(find('', 'events')?.verbs).toContain('create');
    expect(find('coordination.k8s.io', 'leases')).toBeUndefined();
    expect(CLUSTER_RULES.some((r) => r.verbs.includes('*') || r.resources.includes('*'))).toBe(false);
    const objs = rbacManifests({ fullname: 'mailfleet', namespace: 'mailfleet-system' });
    expect(objs.map((o) => o.kind)).toEqual([
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Role',
      'RoleBinding',
    ]);
  });
});

describe('examples', () => {
  it.each(['smtprelay.yaml', 'smtprelay-smarthost.yaml', 'maildomain.yaml'])(
    '%s validates against its kind schema',
    async (file) => {
      const { Value } = await import('typebox/value');
      const { SmtpRelaySpec } = await import('../../../operator/api/smtprelay.js');
      const { MailDomainSpec } = await import('../../../operator/api/maildomain.js');
      const doc = parse(readFileSync(join(root, 'examples', file), 'utf8'));
      const schema = doc.kind === 'SmtpRelay' ? SmtpRelaySpec : MailDomainSpec;
      const spec = Value.Default(schema, structuredClone(doc.spec));
      expect([...Value.Errors(schema, spec)].map((e: any) => `${e.instancePath}: ${e.message}`)).toEqual([]);
      expect(doc.apiVersion).toBe('mailfleet.dev/v1alpha1');
    },
  );
});
