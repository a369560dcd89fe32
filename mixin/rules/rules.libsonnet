// Recording rules, named level:metric:operations, shared by the alerts and the dashboards.
// Target labels are kept (`without`, or `by` with the cluster label first) so that the alerts
// can match them against eightbyeight_up. A group whose numbers all have unknown health yields
// no ratio instead of 0/0 = NaN.
local promql = import '../lib/promql.libsonnet';

{
  local config = $._config,
  local sel(extra='') = promql.selector(config, extra),
  local authFailures = 'eightbyeight_api_request_failures_total'
                       + sel('reason=~"unauthorized|forbidden"'),

  prometheusRules+:: {
    groups+: [
      {
        name: 'eightbyeight.recording',
        rules: [
          // Share of numbers reported unhealthy per subaccount, country and number type, among
          // the numbers whose health is known (healthy + unhealthy).
          {
            record: 'eightbyeight:virtual_numbers_unhealthy:ratio',
            expr: |||
              eightbyeight_virtual_numbers_unhealthy%(sel)s
              /
              (
                (eightbyeight_virtual_numbers_healthy%(sel)s + eightbyeight_virtual_numbers_unhealthy%(sel)s) > 0
              )
            ||| % { sel: sel() },
          },
          // Share of numbers reported healthy per subaccount, among those whose health is known.
          {
            record: 'eightbyeight:virtual_numbers_healthy:ratio',
            expr: |||
              sum without (country, number_type) (eightbyeight_virtual_numbers_healthy%(sel)s)
              /
              (
                sum without (country, number_type) (
                  eightbyeight_virtual_numbers_healthy%(sel)s + eightbyeight_virtual_numbers_unhealthy%(sel)s
                ) > 0
              )
            ||| % { sel: sel() },
          },
          // Authentication failures (HTTP 401/403) per subaccount over 15 minutes. The exporter
          // publishes this counter on its own /metrics endpoint, usually under another job than
          // the /probe targets, so only the cluster and `subaccount` are kept for matching. The
          // `unless ... offset` arm counts a failure series that has just appeared (its first
          // sample is already 1 and increase() needs two samples).
          {
            record: 'eightbyeight:api_auth_failures:increase15m',
            expr: |||
              sum by (%(by)s) (
                increase(%(failures)s[15m])
                or
                (
                  %(failures)s
                  unless
                  %(failures)s offset 15m
                )
              )
            ||| % { by: promql.labels(config, ['subaccount']), failures: authFailures },
          },
        ],
      },
    ],
  },
}
