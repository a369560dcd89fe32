// Everything an operator may want to change when adding the exporter to their own stack.
// Override it in your own jsonnet: (import 'mixin/mixin.libsonnet') + { _config+:: { ... } }.
{
  _config+:: {
    // Selects the exporter's scrape jobs: the /metrics job and the /probe job of the compose
    // stack and the docs, and the job the Prometheus Operator names after the Kubernetes
    // Service (deploy/kubernetes). Every rule and dashboard query carries it.
    eightbyeightSelector: 'job=~"eightbyeight|eightbyeight-probe|eightbyeight-exporter"',

    // The label that tells clusters (or Prometheus servers) apart where one Prometheus, Thanos
    // or Mimir holds several. Rules always keep it through aggregations and joins (an absent
    // label is simply empty); with showMultiCluster the dashboards also get a visible,
    // single-select cluster variable and filter every query by it.
    clusterLabel: 'cluster',
    showMultiCluster: false,

    // Thresholds of the alerts (docs/runbook.md says why each is what it is).
    unhealthyShareWarning: 0.1,
    unhealthyShareCritical: 0.25,
    healthCheckStaleSeconds: 172800,
    // 8x8's poor band starts below 3.6 (bad below 3.1, fair 3.6 to 4.0).
    callMosThreshold: 3.6,
    callFailureRatioThreshold: 0.2,
    // Fewer call legs or sessions than this in the window: too little traffic to judge.
    callMinimumCount: 10,
    webhooksSilentHours: 6,
    // The prepaid balance (--balance.account-id), in the account's own currency: set it to
    // about two days of your spend. The trend alert fires when the fall over the window would
    // empty the balance within the horizon.
    balanceLowThreshold: 20,
    balanceTrendWindow: '6h',
    balanceRunningOutDays: 3,

    // How long each condition must hold before its alert fires.
    forDurations: {
      EightByEightExporterDown: '5m',
      EightByEightApiAuthenticationFailed: '10m',
      EightByEightApiDown: '15m',
      EightByEightInvalidRecordsSkipped: '30m',
      EightByEightNumberUnhealthy: '15m',
      EightByEightNumbersUnhealthyShareHigh: '15m',
      EightByEightNumbersStatusUnhealthy: '15m',
      EightByEightNumbersExpiring: '30m',
      EightByEightHealthCheckStale: '1h',
      EightByEightHealthCheckDisabled: '1h',
      EightByEightNumbersDisappeared: '10m',
      EightByEightCallQualityDegraded: '10m',
      EightByEightCallFailureRatioHigh: '10m',
      EightByEightNumberPushedUnhealthy: '5m',
      EightByEightWebhooksStopped: '30m',
      EightByEightWebhookAuthenticationFailing: '10m',
      EightByEightWebhookMisconfigured: '30m',
      EightByEightBalanceLow: '15m',
      EightByEightBalanceRunningOut: '30m',
    },

    // Where each alert's runbook section is: %s becomes the section's anchor (the alert name in
    // lower case). The default is the runbook's path in this repository; point it at wherever
    // you publish docs/runbook.md, e.g. 'https://wiki.example.com/8x8-runbook#%s'.
    runbookURLPattern: 'docs/runbook.md#%s',

    // Grafana: the folder the dashboards go to (Kubernetes sidecar annotation), their tags,
    // uids, and the refresh and time range they open with.
    grafanaFolder: '8x8 Number Health',
    dashboardTags: ['eightbyeight', '8x8', 'prometheus-exporter'],
    dashboardUidPrefix: 'eightbyeight',
    dashboardRefresh: '1m',
    dashboardPeriod: 'now-6h',
    dashboardTimezone: 'browser',
  },
}
