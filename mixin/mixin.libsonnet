// The eightbyeight-exporter monitoring mixin: alerts, recording rules and Grafana dashboards
// from one _config (config.libsonnet). Fields as every mixin has them:
//   prometheusAlerts, prometheusRules: {groups: [...]} for Prometheus rule files;
//   grafanaDashboards: {'<file>.json': dashboard}.
(import 'config.libsonnet')
+ (import 'alerts/alerts.libsonnet')
+ (import 'rules/rules.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
