# Run once at build time as root (images/service.Dockerfile).
# Django loads openstack_dashboard/local/local_settings.py: link it to the chart's file in CONFIG_DIR, as
# Kolla's horizon image does.
site=/var/lib/kolla/venv/lib/python3/site-packages
ln -sf "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/local_settings.py"
# Static files collected and compressed once here, so that a pod with a read-only root never writes them
# (issue #16): STATIC_ROOT is outside every writable folder of the chart (configDir, /var/lib/horizon, /tmp
# are emptyDirs there), root-owned and read-only, and the chart's local_settings.py sets the same STATIC_ROOT
# and COMPRESS_OFFLINE = True. django-compressor keys each offline block by its rendered content, so what
# renders into a `compress` block must be as at run time: DEBUG False (the chart's), the default WEBROOT,
# STATIC_URL and themes, and a working cache: with the default memcached unreachable here, the angular
# template-cache block failed to render and was left out of the manifest (6 blocks instead of 7), and the login
# page then failed with OfflineGenerationError (found by trying each runtime setting in turn).
static=/usr/share/openstack-dashboard/static
cat >"$CONFIG_DIR/local_settings.py" <<PY
SECRET_KEY = "build-time only"
DEBUG = False
STATIC_ROOT = "$static"
COMPRESS_OFFLINE = True
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PY
export DJANGO_SETTINGS_MODULE=openstack_dashboard.settings
django-admin collectstatic --noinput --verbosity 0
django-admin compress --force --verbosity 0
# The files of site-packages served from these build-time copies, declared to kolla-entry (its
# kolla-entry-unpatchable.json): a hot-fix of one would be reported applied and never served, so kolla-entry
# makes such a patch a conflict instead. The static files collectstatic copied (and compress bundled), and the
# templates holding a `compress` block (a changed block would miss the offline manifest).
python - "$site" <<'PY'
import json
import os
import sys

import django
from django.contrib.staticfiles import finders

django.setup()
site = os.path.realpath(sys.argv[1])
collected, compressed = set(), set()
for finder in finders.get_finders():
    for path, storage in finder.list(["CVS", ".*", "*~"]):
        collected.add(os.path.realpath(storage.path(path)))
for folder, dirs, files in os.walk(site):
    dirs[:] = [d for d in dirs if d != "tests"]  # django-compressor's own test templates are never rendered
    for name in files:
        if name.endswith(".html"):
            with open(os.path.join(folder, name), "rb") as template:
                if b"{% compress" in template.read():
                    compressed.add(os.path.join(folder, name))


def relative(paths):
    return sorted(os.path.relpath(p, site) for p in paths if p.startswith(site + os.sep))


declaration = {
    "the horizon image build collected it into STATIC_ROOT and compressed it offline, so a hot-fix of it would"
    " never be served": relative(collected),
    "its {% compress %} block was compressed offline by the horizon image build, so a changed block would miss"
    " the offline manifest": relative(compressed),
}
with open(os.path.join(site, "kolla-entry-unpatchable.json"), "w") as out:
    json.dump(declaration, out, indent=0)
print(f"horizon: {len(declaration)} groups, {sum(map(len, declaration.values()))} unpatchable files declared")
PY
rm -f "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/.secret_key_store" "$site/openstack_dashboard/local/"*.lock
chmod -R a+rX "$static"
python -c 'import pymemcache, whitenoise'  # the chart's memcached client and static-file server
