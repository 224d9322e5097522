# The weave router image: weavenet/weave:<version>, entrypoint weave-supervisor.
#
# Online:  docker build -t weavenet/weave:<version> .   (<version>: weavenet.__version__, what
#          `weave version` prints; BASE defaults to python:3.11-slim)
# Offline: weave-lab image --output FILE builds this same file on a base made from Debian packages
#          (--build-arg BASE=weavenet/base:<key>), with the wheels already in the context (wheels/)
#          and no network at all.
ARG BASE=python:3.11-slim

# Stage 1: the project and its dependencies installed into a virtualenv at /opt/weave.
FROM ${BASE} AS wheels
WORKDIR /src
COPY . .
# Offline builds bring wheels/ (pip's own wheel included); online ones build them here.
RUN [ -d wheels ] || python3 -m pip wheel --no-cache-dir --wheel-dir wheels . pip
# pip runs from its wheel, so neither base needs pip or ensurepip and the image keeps no pip.
RUN python3 -m venv --without-pip /opt/weave \
 && /opt/weave/bin/python "$(echo wheels/pip-*.whl)/pip" install --no-cache-dir \
        --disable-pip-version-check --no-index --find-links wheels weavenet

# Stage 2: the runtime: the base, the network tools the router calls, and /opt/weave.
FROM ${BASE}
# The offline base has them already; python:3.11-slim needs them from Debian.
RUN if ! command -v ip >/dev/null || ! command -v iptables >/dev/null \
        || ! command -v conntrack >/dev/null; then \
        apt-get update \
     && apt-get install -y --no-install-recommends iproute2 iptables conntrack \
     && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=wheels /opt/weave /opt/weave
# Spelled out: an imported base has no PATH of its own to extend.
ENV PATH=/opt/weave/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["weave-supervisor"]
