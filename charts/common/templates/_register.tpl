{{/*
Registration of a service in Keystone: the service user in the `service` project with its roles, the
catalog service and its endpoints. A service chart turns it on with a `registration` block in its values
(see charts/README.md); common.jobs then renders the Job, and common.configConfigMap the script and its spec.

The script needs only keystoneauth1, which every OpenStack venv has (keystonemiddleware depends on it), so it
runs in the service's own image. It converges: a second run changes nothing, a changed URL or password is
updated in place, and Keystone's 409 on a create that another registration won (they all run at once) is
read as "exists". Passwords come from the environment (secretKeyRef), never from a file or an argument, and
are never printed.
*/}}

{{/* The registration Job's spec, in the shape of a .Values.jobs entry. Args: the chart's root context. */}}
{{- define "common.registrationJobSpec" -}}
{{- $r := .Values.registration -}}
{{- $secret := printf "%s-secrets" .Values.service -}}
image: {{ $r.image }}
command: python3 {{ include "common.configFilesDir" . }}/register.py {{ include "common.configFilesDir" . }}/register.spec
dependencies: [identity]
installConfigFiles: false
backoffLimit: {{ $r.backoffLimit | default 20 }}
env:
  - name: ADMIN_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ $secret }}, key: keystone_admin_password}
  - name: SERVICE_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ $secret }}, key: {{ $r.passwordSecret | default (printf "%s_keystone_password" .Values.service) }}}
{{- end -}}

{{/* What register.py does, as JSON (no secret in it). Args: the chart's root context. */}}
{{- define "common.registrationSpec" -}}
{{- $r := .Values.registration -}}
{{- $g := .Values.global -}}
{{- $endpoints := dict -}}
{{- range $interface, $url := $r.endpoints }}
{{- $_ := set $endpoints $interface (tpl $url $) }}
{{- end }}
{{- $spec := dict
  "authUrl" (tpl $g.oslo.authUrl .)
  "adminUser" ($r.adminUser | default "admin")
  "adminProject" ($r.adminProject | default "admin")
  "domain" "default"
  "project" ($r.project | default "service")
  "user" ($r.user | default .Values.service)
  "roles" ($r.roles | default (list "admin" "service"))
  "region" $g.region
  "service" (dict "name" ($r.serviceName | default .Values.service) "type" $r.serviceType "description" ($r.description | default ""))
  "endpoints" $endpoints
  "timeout" ($r.timeout | default 600)
-}}
{{- toPrettyJson $spec }}
{{- end -}}

{{- define "common.registrationScript" -}}
"""
Register one OpenStack service in Keystone, idempotently (the kolla-entry charts' registration Job).

Usage: python3 register.py SPEC (JSON), with ADMIN_PASSWORD and SERVICE_PASSWORD in the environment.
Waits (up to the spec's timeout) until Keystone issues the admin a token, then makes sure of: the
project, the user (created, or its password updated when it no longer works), its roles on the project,
the region, the catalog service and one endpoint per interface (created, URL updated, duplicates
removed). One line per step on stdout; exit 1 with one line on failure.
"""

import json
import os
import sys
import time
import urllib.parse

from keystoneauth1 import exceptions, session
from keystoneauth1.identity import v3

RETRY_SECONDS = 5


class Failed(Exception):
    """A step that cannot succeed: the Job fails (and Kubernetes runs it again)."""


class Identity:
    """The Identity v3 API through one keystoneauth session."""

    def __init__(self, sess, url):
        self.sess = sess
        self.url = url.rstrip("/")

    def call(self, method, path, body=None, ok=(200, 201, 204), quiet=False):
        response = self.sess.request(self.url + path, method, json=body, raise_exc=False)
        if response.status_code not in ok:
            # A body sent with a password is never echoed: its error could quote the value.
            detail = "" if quiet else " " + response.text[:200].replace("\n", " ")
            raise Failed(f"{method} {path.split('?')[0]}: HTTP {response.status_code}{detail}")
        return response

    def find(self, collection, **query):
        path = f"/{collection}?" + urllib.parse.urlencode(query)
        return self.call("GET", path).json()[collection]

    def ensure(self, collection, singular, query, body, quiet=False):
        """The id of the one object matching query, created from body when there is none."""
        for _ in range(3):
            found = self.find(collection, **query)
            if found:
                return found[0]["id"], "kept"
            response = self.call("POST", f"/{collection}", {singular: body}, ok=(201, 409), quiet=quiet)
            if response.status_code == 201:
                return response.json()[singular]["id"], "created"
            # 409: another registration created it in between; read it again.
        raise Failed(f"{collection} {query}: conflicts on create but is never found")


def say(message):
    print(message, flush=True)


def admin_session(spec, password):
    auth = v3.Password(auth_url=spec["authUrl"], username=spec["adminUser"], password=password,
                       project_name=spec["adminProject"], user_domain_id=spec["domain"],
                       project_domain_id=spec["domain"])
    sess = session.Session(auth=auth)
    deadline = time.monotonic() + spec["timeout"]
    while True:
        try:
            sess.get_token()
            return sess
        except exceptions.ClientException as err:
            if time.monotonic() >= deadline:
                raise Failed(f"Keystone at {spec['authUrl']} gave no admin token in {spec['timeout']} s: "
                             f"{type(err).__name__}; check the keystone pods and its bootstrap Job")
            say(f"waiting for Keystone at {spec['authUrl']}: {type(err).__name__}")
            time.sleep(RETRY_SECONDS)


def password_works(spec, user, password):
    auth = v3.Password(auth_url=spec["authUrl"], username=user, password=password,
                       user_domain_id=spec["domain"])
    try:
        session.Session(auth=auth).get_token()
        return True
    except exceptions.Unauthorized:
        return False


def ensure_user(ks, spec, project_id, password):
    name = spec["user"]
    body = {"name": name, "domain_id": spec["domain"], "password": password, "enabled": True,
            "default_project_id": project_id}
    user_id, outcome = ks.ensure("users", "user", {"name": name, "domain_id": spec["domain"]}, body, quiet=True)
    if outcome == "kept" and not password_works(spec, name, password):
        ks.call("PATCH", f"/users/{user_id}", {"user": {"password": password, "enabled": True}}, quiet=True)
        outcome = "password updated"
    say(f"user {name}: {outcome}")
    return user_id


def ensure_roles(ks, spec, project_id, user_id):
    for role in spec["roles"]:
        role_id, outcome = ks.ensure("roles", "role", {"name": role}, {"name": role})
        ks.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
        say(f"role {role} of {spec['user']} on project {spec['project']}: granted (role {outcome})")


def ensure_region(ks, region):
    if ks.call("GET", f"/regions/{urllib.parse.quote(region)}", ok=(200, 404)).status_code == 404:
        ks.call("POST", "/regions", {"region": {"id": region}}, ok=(201, 409))
        say(f"region {region}: created")


def ensure_service(ks, service):
    for found in ks.find("services", type=service["type"]):
        if found.get("name") == service["name"]:
            say(f"service {service['name']} ({service['type']}): kept")
            return found["id"]
    body = dict(service, enabled=True)
    service_id = ks.call("POST", "/services", {"service": body}, ok=(201,)).json()["service"]["id"]
    say(f"service {service['name']} ({service['type']}): created")
    return service_id


def ensure_endpoint(ks, service_id, region, interface, url):
    found = ks.find("endpoints", service_id=service_id, interface=interface, region_id=region)
    if not found:
        body = {"service_id": service_id, "interface": interface, "region_id": region, "url": url, "enabled": True}
        ks.call("POST", "/endpoints", {"endpoint": body}, ok=(201,))
        outcome = "created"
    elif found[0]["url"] != url:
        ks.call("PATCH", f"/endpoints/{found[0]['id']}", {"endpoint": {"url": url}})
        outcome = "url updated"
    else:
        outcome = "kept"
    for extra in found[1:]:
        ks.call("DELETE", f"/endpoints/{extra['id']}")
        outcome += ", a duplicate removed"
    say(f"endpoint {interface} {url}: {outcome}")


def register(spec, admin_password, service_password):
    ks = Identity(admin_session(spec, admin_password), spec["authUrl"])
    domain = spec["domain"]
    project_id, outcome = ks.ensure("projects", "project", {"name": spec["project"], "domain_id": domain},
                                    {"name": spec["project"], "domain_id": domain})
    say(f"project {spec['project']}: {outcome}")
    user_id = ensure_user(ks, spec, project_id, service_password)
    ensure_roles(ks, spec, project_id, user_id)
    ensure_region(ks, spec["region"])
    service_id = ensure_service(ks, spec["service"])
    for interface in sorted(spec["endpoints"]):
        ensure_endpoint(ks, service_id, spec["region"], interface, spec["endpoints"][interface])


def main(argv):
    if len(argv) != 2:
        print("usage: register.py SPEC (ADMIN_PASSWORD, SERVICE_PASSWORD in the environment)", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    passwords = [os.environ.get(name, "") for name in ("ADMIN_PASSWORD", "SERVICE_PASSWORD")]
    if not all(passwords):
        print("registration failed: ADMIN_PASSWORD and SERVICE_PASSWORD must be set (the region's Secret)",
              file=sys.stderr)
        return 1
    try:
        register(spec, *passwords)
    except (Failed, exceptions.ClientException) as err:
        print(f"registration of {spec['service']['name']} failed: {err}", file=sys.stderr)
        return 1
    say(f"registration of {spec['service']['name']} in {spec['region']}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
{{- end -}}
