{{/*
Labels, names, images and placement shared by every chart.
Every helper takes the calling chart's root context (".") unless its comment says otherwise.
*/}}

{{/* Selector labels: stable for the life of a workload (a selector is immutable). Args: dict root, component. */}}
{{- define "common.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of an object. Args: dict root, component. */}}
{{- define "common.labels" -}}
{{ include "common.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .root.Values.partOf | default "openstack" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/*
An OpenStack image from the region's registry: <registry>/<imageNamespace>/<name>:<tag>.
Args: dict root, name. The tag is the chart's imageTag, else global.imageTag.
*/}}
{{- define "common.image" -}}
{{- $g := .root.Values.global -}}
{{- printf "%s/%s/%s:%s" $g.registry $g.imageNamespace .name (.root.Values.imageTag | default $g.imageTag) -}}
{{- end -}}

{{/* An upstream (infrastructure) image mirrored in the region's registry. Args: dict root, image (repository, tag). */}}
{{- define "common.upstreamImage" -}}
{{- printf "%s/%s:%s" .root.Values.global.registry .image.repository (toString .image.tag) -}}
{{- end -}}

{{/*
Node placement, as in the seed: hypervisor and network nodes carry the label species=<name> and the taint
species=<name>:NoSchedule. A pod with placement "hypervisor" or "network" selects and tolerates exactly
that species; every other pod is kept off both species by a required node affinity.
An optional hostname pins the pod to one node. Args: dict root, placement, hostname (both may be empty).
*/}}
{{- define "common.placement" -}}
{{- $species := .root.Values.global.nodeSpecies | default (list "hypervisor" "network") -}}
{{- if .placement }}
{{- if not (has .placement $species) }}
{{- fail (printf "placement %q is not one of the node species %v" .placement $species) }}
{{- end }}
nodeSelector:
  species: {{ .placement }}
  {{- with .hostname }}
  kubernetes.io/hostname: {{ . }}
  {{- end }}
tolerations:
  - key: species
    operator: Equal
    value: {{ .placement }}
    effect: NoSchedule
{{- else }}
{{- with .hostname }}
nodeSelector:
  kubernetes.io/hostname: {{ . }}
{{- end }}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: species
              operator: NotIn
              values:
              {{- range $species }}
                - {{ . }}
              {{- end }}
{{- end }}
{{- end -}}

{{/*
oslo.config INI from a values map: section -> option -> value. Sections and options are sorted (DEFAULT
comes first because capitals sort first); a list becomes a comma-separated value; a null value drops the
option; every value goes through `tpl`, so it may use {{ .Values.global.x }}. Secrets are never values
here: they are kolla-entry placeholders such as ${file:/var/lib/kolla/secrets/<service>/<key>}.
Args: dict root, conf.
*/}}
{{- define "common.oslo" -}}
{{- $root := .root -}}
{{- range $section := keys .conf | sortAlpha }}
[{{ $section }}]
{{- $options := index $.conf $section }}
{{- range $key := keys $options | sortAlpha }}
{{- $value := index $options $key }}
{{- if kindIs "slice" $value }}
{{ $key }} = {{ tpl (join "," $value) $root }}
{{- else if not (kindIs "invalid" $value) }}
{{ $key }} = {{ tpl (toString $value) $root }}
{{- end }}
{{- end }}
{{ end }}
{{- end -}}

{{/* sha256 over rendered documents. Args: list of strings. */}}
{{- define "common.checksumOf" -}}
{{- join "\n---\n" . | sha256sum -}}
{{- end -}}
