# Run once at build time as root (images/service.Dockerfile). Django loads
# openstack_dashboard/local/local_settings.py: link it to the chart's file in CONFIG_DIR, as Kolla's horizon
# image does.
site=/var/lib/kolla/venv/lib/python3/site-packages
ln -sf "$CONFIG_DIR/local_settings.py" "$site/openstack_dashboard/local/local_settings.py"
python -c 'import pymemcache, openstack_dashboard.wsgi' 2>/dev/null || python -c 'import pymemcache, openstack_dashboard'
