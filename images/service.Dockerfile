# One OpenStack service on the kolla-entry base (issue #14): the same file builds every images/<service>/.
# Build context, made by images/build.sh (no PyPI access during the build):
#   wheels/            the service's wheels, fetched on the host with images/constraints.txt
#   constraints.txt    images/constraints.txt (one resolve of every service, see images/README.md)
#   requirements.txt   images/<service>/requirements.txt
#   setup.sh           images/<service>/setup.sh: what the service needs besides its venv (runs as root,
#                      once, after the install), or nothing
# The files the service's wheel ships under <venv>/etc/<service>/ (paste ini, rootwrap, ...) are copied into
# CONFIG_DIR, as Kolla's images do: the charts render only the service's own config files.
ARG BASE_IMAGE=localhost/kolla-entry-base:latest
FROM ${BASE_IMAGE}

# Kolla's fixed ids (kolla:kolla/common/users.py), member of the shared kolla group, no login shell.
ARG SERVICE
ARG SERVICE_UID
ARG CONFIG_DIR=/etc/${SERVICE}
RUN test -n "$SERVICE" && test -n "$SERVICE_UID" \
    && groupadd --gid "$SERVICE_UID" "$SERVICE" \
    && useradd --uid "$SERVICE_UID" --gid "$SERVICE" --groups kolla --no-create-home \
        --home-dir "/var/lib/$SERVICE" --shell /usr/sbin/nologin "$SERVICE" \
    && install -d -o "$SERVICE" -g "$SERVICE" -m 0750 "/var/lib/$SERVICE" \
    && install -d -o root -g "$SERVICE" -m 0750 "$CONFIG_DIR"

# Root-owned site-packages, as in Kolla: only kolla-entry (running as root before the privilege drop) may
# patch it. Bytecode is compiled here, like Kolla's `pip install` does. PYC_INVALIDATION_MODE: `timestamp`
# is pip's and Kolla's default; `unchecked-hash` makes Python trust a .pyc without looking at its source,
# the strictest test of kolla-entry's .pyc handling (the keystone container test builds it).
ARG PYC_INVALIDATION_MODE=timestamp
COPY wheels/ /tmp/wheels/
COPY constraints.txt requirements.txt setup.sh /tmp/
RUN pip install --quiet --no-index --no-cache-dir --no-compile --find-links /tmp/wheels \
        -c /tmp/constraints.txt -r /tmp/requirements.txt \
    && python -m compileall -q -j 0 --invalidation-mode "$PYC_INVALIDATION_MODE" \
        /var/lib/kolla/venv/lib/python3/site-packages >/dev/null \
    && if [ -d "/var/lib/kolla/venv/etc/$SERVICE" ]; then \
        cp -R "/var/lib/kolla/venv/etc/$SERVICE/." "$CONFIG_DIR/" \
        && chown -R "root:$SERVICE" "$CONFIG_DIR" && chmod -R u=rwX,g=rX,o= "$CONFIG_DIR"; \
    fi \
    && SERVICE="$SERVICE" CONFIG_DIR="$CONFIG_DIR" sh -eu /tmp/setup.sh \
    && rm -rf /tmp/wheels /tmp/constraints.txt /tmp/requirements.txt /tmp/setup.sh /root/.cache \
    && pip check \
    && gunicorn --version

# Overlay mode (issue #16): the import hook that serves hot-fixes from a writable folder in pods with a
# read-only root. Standard library only, and inert (one environment lookup) unless KOLLA_ENTRY_OVERLAY is set.
RUN kolla-entry install-overlay-hook --target /var/lib/kolla/venv/lib/python3/site-packages \
    && python -m compileall -q --invalidation-mode "$PYC_INVALIDATION_MODE" \
        /var/lib/kolla/venv/lib/python3/site-packages/kolla_entry_overlay.py

ENV KOLLA_SERVICE_NAME=${SERVICE}
