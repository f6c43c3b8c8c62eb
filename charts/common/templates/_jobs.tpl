{{/*
One-shot Jobs of a service chart besides db-sync (keystone's bootstrap, nova's cell setup, the catalog
registration) and the Secret folders some services need as real folders (keystone's key repositories).

.Values.jobs.<name>: enabled, image, command, dependencies (keys of global.endpoints), checks (check commands
kolla-entry runs until they exit 0), waitForSchema (also wait for the chart's schemaCheck), installConfigFiles
(false: the Job needs none of the service's config files), env (plain Kubernetes env entries), backoffLimit.
.Values.registration: see common.registrationJobSpec; it adds the Job "register".
.Values.scripts.<name>: a script (through tpl) put in the config ConfigMap as it is, run from there by a
command such as `sh /var/lib/kolla/config_files/<name>`; it must hold no secret.
*/}}

{{- define "common.secretFoldersDir" -}}/var/lib/kolla/secret-folders/{{ .Values.service }}{{- end -}}

{{/* The enabled one-shot Jobs, as YAML: name -> spec. Args: the chart's root context. */}}
{{- define "common.jobSpecs" -}}
{{- $jobs := dict }}
{{- range $name, $job := .Values.jobs | default dict }}
{{- if $job.enabled }}
{{- $_ := set $jobs $name $job }}
{{- end }}
{{- end }}
{{- if (.Values.registration | default dict).enabled }}
{{- $_ := set $jobs "register" (include "common.registrationJobSpec" . | fromYaml) }}
{{- end }}
{{- toYaml $jobs }}
{{- end -}}

{{/* The config ConfigMap's entries for the Jobs: their config.json, scripts and the registration. */}}
{{- define "common.jobConfigs" -}}
{{- $root := . -}}
{{- $jobs := include "common.jobSpecs" . | fromYaml }}
{{- range $name := keys $jobs | sortAlpha }}
  {{ $name }}.json: |
    {{- include "common.configJson" (dict "root" $root "c" (index $jobs $name) "schema" (index $jobs $name).waitForSchema) | nindent 4 }}
{{- end }}
{{- range $name := keys (.Values.scripts | default dict) | sortAlpha }}
  {{ $name }}: |
    {{- tpl (index $root.Values.scripts $name) $root | nindent 4 }}
{{- end }}
{{- if (.Values.registration | default dict).enabled }}
  register.spec: |
    {{- include "common.registrationSpec" . | nindent 4 }}
  register.py: |
    {{- include "common.registrationScript" . | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
A Job of the chart. Its name ends in a hash of the image and of everything the pods see, as db-sync's does:
a change creates a new Job (a Job's pod template is immutable) that runs again, so every Job here must
converge when run again. Args: dict root, name, c (the Job's spec).
*/}}
{{- define "common.job" -}}
{{- $root := .root -}}
{{- $hash := printf "%s\n%s" (include "common.image" (dict "root" $root "name" .c.image)) (include "common.checksum" $root) | sha256sum | trunc 10 }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $root.Values.service }}-{{ .name }}-{{ $hash }}
  labels:
    {{- include "common.labels" (dict "root" $root "component" .name) | nindent 4 }}
spec:
  backoffLimit: {{ .c.backoffLimit | default 20 }}
  template:
    metadata:
      labels:
        {{- include "common.labels" (dict "root" $root "component" .name) | nindent 8 }}
      annotations:
        checksum/kolla-entry: {{ include "common.checksum" $root }}
    spec:
      restartPolicy: OnFailure
      {{- include "common.placement" (dict "root" $root "placement" "" "hostname" "") | trim | nindent 6 }}
      {{- if include "common.hardened" . }}
      securityContext:
        {{- include "common.podSecurity" $root | nindent 8 }}
      {{- end }}
      containers:
        - {{ include "common.kollaContainer" (dict "root" $root "name" .name "c" .c) | indent 10 | trim }}
      volumes:
        {{- include "common.kollaVolumes" (dict "root" $root "c" .c) | nindent 8 }}
{{- end -}}

{{/* Every enabled Job of the chart (db-sync excepted: common.dbSyncJob). Args: the chart's root context. */}}
{{- define "common.jobs" -}}
{{- $root := . -}}
{{- $jobs := include "common.jobSpecs" . | fromYaml }}
{{- range $name := keys $jobs | sortAlpha }}
---
{{ include "common.job" (dict "root" $root "name" $name "c" (index $jobs $name)) }}
{{- end }}
{{- end -}}

{{/*
The volume behind .Values.secretFolders: the chart's Secret, each key <prefix><suffix> of a folder
projected as <folder name>/<suffix>, so kolla-entry copies each folder as a whole (a key dropped from the
Secret disappears from the folder). Args: the chart's root context.
*/}}
{{- define "common.secretFoldersVolume" -}}
{{- $root := . -}}
{{- $items := list }}
{{- range $folder := .Values.secretFolders }}
{{- range $key := keys ($root.Values.secrets | default dict) | sortAlpha }}
{{- if hasPrefix $folder.prefix $key }}
{{- $items = append $items (dict "key" $key "path" (printf "%s/%s" $folder.name (trimPrefix $folder.prefix $key))) }}
{{- end }}
{{- end }}
{{- end -}}
- name: secret-folders
  secret:
    secretName: {{ .Values.service }}-secrets
    defaultMode: 0400
    {{- with $items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}

{{/*
A schema check for a project whose db-sync is plain alembic (cinder, manila, ironic, designate, barbican):
exits 0 when the database holds every head of the project's migrations. For a chart's `scripts`, e.g.
  schema-check.py: '{{ include "common.alembicSchemaCheck" (dict "config" "/etc/cinder/cinder.conf" "module" "cinder.db") }}'
Args: dict config (the rendered oslo config file), module (the package holding alembic.ini), ini (default
alembic.ini), section and option of the database URL (default database / connection).
*/}}
{{- define "common.alembicSchemaCheck" -}}
import configparser
import importlib
import os
import sys

import sqlalchemy
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MODULE = {{ .module | quote }}
parser = configparser.RawConfigParser(strict=False)
if not parser.read({{ .config | quote }}):
    sys.exit("cannot read {{ .config }}")
url = parser.get({{ .section | default "database" | quote }}, {{ .option | default "connection" | quote }})
ini = os.path.join(os.path.dirname(importlib.import_module(MODULE).__file__), {{ .ini | default "alembic.ini" | quote }})
heads = set(ScriptDirectory.from_config(Config(ini)).get_heads())
engine = sqlalchemy.create_engine(url)
try:
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
finally:
    engine.dispose()
if heads - current:
    sys.exit(f"{MODULE} schema not ready (the db-sync Job makes it): lacks {sorted(heads - current)}")
print(f"{MODULE} schema at head")
{{- end -}}
