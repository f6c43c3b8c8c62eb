# Run once at build time as root (images/service.Dockerfile).
# Django loads openstack_dashboard/local/local_settings.py: link it to the chart's file in CONFIG_DIR, as
# Kolla's horizon image does.
site=/var/lib/kolla/venv/lib/python3/site-packages
ln -sf "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/local_settings.py"
# Static files, collected once here into /var/lib/horizon/static (the chart's local_settings.py sets the same
# STATIC_ROOT), owned by horizon: django-compressor writes the compressed CSS/JS it makes at the first request
# into STATIC_ROOT/CACHE. Offline compression (`compress` here, COMPRESS_OFFLINE = True) does not work: the
# login page asks for manifest keys that a build-time `compress` does not produce (found by the test).
cat >"$CONFIG_DIR/local_settings.py" <<'PY'
SECRET_KEY = "build-time only"
STATIC_ROOT = "/var/lib/horizon/static"
PY
export DJANGO_SETTINGS_MODULE=openstack_dashboard.settings
django-admin collectstatic --noinput --verbosity 0
rm -f "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/.secret_key_store" "$site/openstack_dashboard/local/"*.lock
chown -R horizon:horizon /var/lib/horizon/static
python -c 'import pymemcache'
