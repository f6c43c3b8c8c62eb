# Run once at build time as root (images/service.Dockerfile).
# Django loads openstack_dashboard/local/local_settings.py: link it to the chart's file in CONFIG_DIR, as
# Kolla's horizon image does.
site=/var/lib/kolla/venv/lib/python3/site-packages
ln -sf "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/local_settings.py"
# Static files and the offline-compressed CSS/JS, made once here into /var/lib/horizon/static (the chart's
# local_settings.py sets the same STATIC_ROOT and COMPRESS_OFFLINE = True): the horizon user never needs to
# write next to the code, and gunicorn serves pages whose compressed assets already exist.
cat >"$CONFIG_DIR/local_settings.py" <<'PY'
SECRET_KEY = "build-time only"
STATIC_ROOT = "/var/lib/horizon/static"
COMPRESS_OFFLINE = True
PY
export DJANGO_SETTINGS_MODULE=openstack_dashboard.settings
django-admin collectstatic --noinput --verbosity 0
django-admin compress --force --verbosity 0
rm -f "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/.secret_key_store" "$site/openstack_dashboard/local/"*.lock
chmod -R a+rX /var/lib/horizon/static
python -c 'import pymemcache'
