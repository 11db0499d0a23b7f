/**
 * An SmtpRelay's children: the config rendered from its bound domains, every object rendered from the
 * spec and the gathered material (StatefulSet, Services, ConfigMap, Secrets, PDB, ServiceMonitor,
 * Certificate) applied where they differ from the cache, and optional children the spec no longer asks
 * for deleted. Owns the one judgement about existing children the render cannot make alone: the queue
 * volumes' size and class, which a StatefulSet cannot change.
 */
import { stringify } from 'yaml';
import type { SmtpRelay } from '../api/smtprelay.js';
import { isSubset } from '../runtime/diff.js';
import type { Store } from '../runtime/informer.js';
import type { KubeObject } from '../runtime/kube.js';
import { Kinds } from '../runtime/resources.js';
import { applyIfChanged, type OperatorContext } from '../shared/context.js';
import { renderRelayConfig } from './config.js';
import type { Material } from './material.js';
import { names } from './names.js';
import { renderCertificate, renderRelay } from './render.js';
import type { Problem } from './status.js';

export interface QueueStorage {
  size: string;
  storageClassName?: string;
}

export class RelayChildren {
  constructor(
    private readonly ctx: OperatorContext,
    /** Relay image used when spec.image is empty. */
    private readonly image: string,
  ) {}

  /** Renders and applies every child, then deletes the optional ones the spec dropped. */
  async apply(relay: SmtpRelay, m: Material, statefulSetReplicas: number, storage: QueueStorage) {
    const { ctx } = this;
    const config = renderRelayConfig({
      relay,
      domains: m.domains,
      tls: m.hasTls,
      ca: m.hasCa,
      smarthostCredentials: m.smarthostCredentials,
      smarthostCa: m.smarthostCa,
      fleetStore: m.fleetStore,
    });
    const objects = renderRelay({
      relay,
      image: this.image,
      configYaml: stringify(config, { lineWidth: 0 }),
      secrets: m,
      statefulSetReplicas,
      storage,
      serviceMonitor: ctx.features.serviceMonitors && relay.spec.monitoring.serviceMonitor.enabled,
      certificate: this.wantsCertificate(relay),
    });
    for (const o of objects) await applyIfChanged(ctx, this.storeOf(o), o);
    await this.prune(relay, objects);
  }

  /** While material blocks the rollout: cert-manager issues the Secret TLS waits for only once the Certificate exists. */
  async applyBlocked(relay: SmtpRelay) {
    if (this.wantsCertificate(relay))
      await applyIfChanged(this.ctx, this.ctx.stores.certificates, renderCertificate(relay));
  }

  /** volumeClaimTemplates cannot change: keep what the StatefulSet has and say so when the spec differs. */
  storage(relay: SmtpRelay, sts: KubeObject | undefined, degraded: Problem[]): QueueStorage {
    const want = {
      size: String(relay.spec.queue.storage.size),
      storageClassName: relay.spec.queue.storage.storageClassName,
    };
    const vct = (
      sts?.spec as
        | {
            volumeClaimTemplates?: Array<{
              spec?: { storageClassName?: string; resources?: { requests?: { storage?: string } } };
            }>;
          }
        | undefined
    )?.volumeClaimTemplates?.[0]?.spec;
    if (!vct) return want;
    const have = {
      size: vct.resources?.requests?.storage ?? want.size,
      storageClassName: vct.storageClassName,
    };
    const sameClass = !want.storageClassName || want.storageClassName === have.storageClassName;
    if (!isSubset(want.size, have.size) || !sameClass) {
      degraded.push({
        reason: 'StorageChangeIgnored',
        message: `queue.storage asks for ${want.size}${want.storageClassName ? ` of ${want.storageClassName}` : ''} but the queue volumes are ${have.size}${have.storageClassName ? ` of ${have.storageClassName}` : ''}; volume templates cannot change (resize the PVCs directly, or recreate the relay)`,
      });
    }
    return have;
  }

  private wantsCertificate(relay: SmtpRelay): boolean {
    return this.ctx.features.certManager && !!relay.spec.tls.issuerRef && !relay.spec.tls.secretName;
  }

  /** Deletes owned optional children that the spec no longer asks for. */
  private async prune(relay: SmtpRelay, desired: KubeObject[]) {
    const { ctx } = this;
    const n = names(relay.metadata.name);
    const want = new Set(desired.map((o) => `${o.kind}/${o.metadata?.name}`));
    const candidates: Array<[keyof typeof Kinds, string, Store]> = [
      ['ServiceMonitor', n.serviceMonitor, ctx.stores.serviceMonitors],
      ['Certificate', n.certificate, ctx.stores.certificates],
      ['Secret', n.ca, ctx.stores.secrets],
      ['Secret', n.tls, ctx.stores.secrets],
    ];
    for (const [kind, objName, store] of candidates) {
      if (want.has(`${kind}/${objName}`)) continue;
      const live = store.get(relay.metadata.namespace, objName);
      const owned = live?.metadata?.ownerReferences?.some(
        (r) => r.uid === relay.metadata.uid && r.controller,
      );
      if (live && owned)
        await ctx.api.delete(Kinds[kind], relay.metadata.namespace, objName, live.metadata?.uid);
    }
  }

  private storeOf(o: KubeObject): Store {
    const s = this.ctx.stores;
    switch (o.kind) {
      case 'Secret':
        return s.secrets;
      case 'ConfigMap':
        return s.configMaps;
      case 'Service':
        return s.services;
      case 'StatefulSet':
        return s.statefulSets;
      case 'PodDisruptionBudget':
        return s.pdbs;
      case 'ServiceMonitor':
        return s.serviceMonitors;
      default:
        return s.certificates;
    }
  }
}
