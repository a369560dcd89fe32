// What `python -m mixin` renders: the mixin with the _config overrides passed as the external
// variable `config` (a JSON object; `{}` builds the files committed in this repository).
local mixin = (import 'mixin.libsonnet') + { _config+:: std.parseJson(std.extVar('config')) };

{
  alerts: mixin.prometheusAlerts,
  rules: mixin.prometheusRules,
  dashboards: mixin.grafanaDashboards,
  config: mixin._config,
}
