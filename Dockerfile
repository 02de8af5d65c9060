# myservice: a node:cluster greeting service that uses every CPU its container grants.
#
#   docker build -t myservice .
#   docker run --rm -p 5000:5000 --cpus 2 myservice
#
# Both stages start from NODE_IMAGE (the README's Docker section says why this default);
# build from another Node 26 base with --build-arg NODE_IMAGE=…
ARG NODE_IMAGE=node:26-bookworm-slim

# Build stage: dev dependencies and the TypeScript compiler; nothing here reaches the runtime image.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script is the `node` dev dependency fetching a second Node
# binary, which the base image already provides.
RUN npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier
COPY tsconfig.json ./
COPY src ./src
# .dockerignore leaves test/ and scripts/ out of the context, so this compiles src/ only.
RUN npx tsc -p tsconfig.json

# Runtime stage: the compiled JavaScript and package.json (for "type": "module"), nothing else.
FROM ${NODE_IMAGE}
# The service never runs npm; removing it (and yarn/corepack where the base has them) keeps their
# bundled dependencies out of the container's files and its scanner reports (the base's layers
# still hold their bytes, so the image is no smaller).
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only to the `node` user: the service cannot rewrite its own code.
COPY --from=build /app/package.json ./
COPY --from=build /app/dist/src ./dist/src
USER node
EXPOSE 5000
# The primary handles SIGTERM itself (drain, then exit 0) and must receive it: it is PID 1 here,
# started by node directly (no npm, no shell), and the kernel delivers no default action to PID 1.
STOPSIGNAL SIGTERM
# Exit 0 once the local /readyz answers 200; needs no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "dist/src/main.js", "--healthcheck"]
# The official image's ENTRYPOINT, docker-entrypoint.sh, would start a shell before node: none here.
ENTRYPOINT []
CMD ["node", "dist/src/main.js"]

# Labels last: a new revision or date only rebuilds this metadata, not the layers above.
ARG NODE_IMAGE
ARG VERSION=1.0.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="myservice" \
      org.opencontainers.image.description="Hello, Docker world from every CPU: a node:cluster greeting service that scales inside one container" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
