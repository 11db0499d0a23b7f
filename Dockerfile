# syntax=docker/dockerfile:1
# The one mailfleet image: `mailfleet-operator` and `mailfleet-relay` are both commands on PATH.
# The operator renders relay StatefulSets with `mailfleet-relay --config /etc/mailfleet/relay.yaml`, and
# operators run `kubectl exec <pod> -- mailfleet-relay queue list` against a relay pod.
#
#   docker build -t ghcr.io/mailfleet/mailfleet:0.1.0 .
#   scripts/image.sh [--oci-archive FILE]     the same with docker, podman or buildah, cached (README)
#
# Keep in step (test/unit/chart/image.test.ts checks it): NODE_VERSION = scripts/node.sh's Node version,
# VERSION = package.json version = the chart's appVersion = the operator's default relay image tag.
ARG NODE_VERSION=24.21.0
ARG VERSION=0.1.0
# The base of every stage: the official Node image. Where no registry can be reached, scripts/image.sh
# builds on a stand-in made from Debian packages instead (docs/adr/0050-image-build.md).
ARG BASE_IMAGE=docker.io/library/node:${NODE_VERSION}-trixie-slim

# 1. Compile TypeScript to dist/ with every dependency (dev included).
FROM ${BASE_IMAGE} AS build
# Extra CAs npm trusts while it downloads (a TLS-inspecting proxy's): scripts/image.sh names the host's
# trust store, mounted for RUN steps only. Build stages only: the runtime stage has no such ARG.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY relay ./relay
COPY operator ./operator
RUN npm run build

# 2. Production dependencies only.
FROM ${BASE_IMAGE} AS deps
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# 3. Runtime: Node, the compiled code and production dependencies; no compiler, no npm, no shell tools added.
FROM ${BASE_IMAGE} AS runtime
ARG VERSION
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="mailfleet" \
      org.opencontainers.image.description="mailfleet: the operator (mailfleet-operator) and the SMTP relay (mailfleet-relay)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
ENV NODE_ENV=production
WORKDIR /app
# npm, corepack and the base's yarn are not needed at run time: leave them out of what runs in production.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /opt/yarn-v* /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && groupadd --system --gid 65532 mailfleet \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin mailfleet \
 && mkdir -p /var/spool/mailfleet /etc/mailfleet \
 && chown 65532:65532 /var/spool/mailfleet
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/relay ./dist/relay
COPY --from=build /src/dist/operator ./dist/operator
COPY package.json ./
# The package's "bin" entries as commands on PATH (their files start with #!/usr/bin/env node).
RUN chmod 0755 dist/relay/cli.js dist/operator/cli.js \
 && ln -s /app/dist/relay/cli.js /usr/local/bin/mailfleet-relay \
 && ln -s /app/dist/operator/cli.js /usr/local/bin/mailfleet-operator
USER 65532:65532
# The queue is data, not part of the container: a volume (Kubernetes mounts the relay's PVC here). The
# embedded default config (`mailfleet-relay` without --config) keeps its queue in ./.spool, so the
# working directory is this volume, writable by the user above even on a read-only root file system.
VOLUME ["/var/spool/mailfleet"]
WORKDIR /var/spool/mailfleet
# SMTP (submission, smtps, relay), the relay's admin port (/metrics), the operator's metrics and probes.
EXPOSE 587 465 2525 9091 8080 8081
CMD ["mailfleet-operator"]
