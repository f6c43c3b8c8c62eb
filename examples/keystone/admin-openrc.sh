# Credentials of Keystone's bootstrap admin, rendered by `kolla-entry run` ("template": true) into
# /etc/keystone/admin-openrc.sh (mode 0600). The bootstrap step sources it, and so can an operator:
#   . /etc/keystone/admin-openrc.sh
# The password comes from the mounted Secret, never from a ConfigMap.
export OS_AUTH_URL='http://${env:KEYSTONE_PUBLIC_HOST:-127.0.0.1}:${env:KEYSTONE_BIND_PORT:-5000}/v3/'
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
export OS_USERNAME=admin
export OS_PASSWORD='${file:@KOLLA_ROOT@/var/lib/kolla/secrets/keystone/admin-password}'
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_ID=default
export OS_PROJECT_DOMAIN_ID=default
