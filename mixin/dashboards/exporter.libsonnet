// 8x8 Number Health: exporter
local g = import 'lib.libsonnet';

{
  local config = $._config,
  local s = g.selectors(config),

  grafanaDashboards+:: {
    'eightbyeight-exporter.json': g.dashboard(
      config,
      'exporter',
      '8x8 Number Health: exporter',
      'Is eightbyeight-exporter reading the 8x8 API well: up, scrape duration, API requests, failures, latency and invalid records.',
      variables=[
        g.queryVariable('subaccount', 'Subaccount', 'eightbyeight_up{%(base)s}' % s),
      ],
      annotations=[

      ],
      panels=[
        {
          type: 'stat',
          title: '8x8 API reachable',
          description: 'eightbyeight_up per subaccount: 1 when the last scrape read the 8x8 number list, 0 when it failed (the failure reason is in the failures panel).',
          fieldConfig: {
            defaults: {
              unit: 'none',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'red',
                    value: null,
                  },
                  {
                    color: 'green',
                    value: 1,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [
                {
                  type: 'value',
                  options: {
                    '0': {
                      text: 'DOWN',
                      color: 'red',
                      index: 1,
                    },
                    '1': {
                      text: 'UP',
                      color: 'green',
                      index: 0,
                    },
                  },
                },
              ],
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'background',
            graphMode: 'none',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 0,
            y: 0,
            w: 8,
            h: 4,
          },
          targets: [
            g.target(|||
              eightbyeight_up{%(sub)s}
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'API failure ratio',
          description: 'Failed 8x8 API requests as a share of all requests over the rate interval.',
          fieldConfig: {
            defaults: {
              unit: 'percentunit',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                  {
                    color: 'orange',
                    value: 0.01,
                  },
                  {
                    color: 'red',
                    value: 0.1,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
              decimals: 1,
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'value',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 8,
            y: 0,
            w: 4,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(rate(eightbyeight_api_request_failures_total{%(sub)s}[$__rate_interval]))
              /
              sum(rate(eightbyeight_api_requests_total{%(sub)s}[$__rate_interval]))
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Invalid records',
          description: 'Records in the latest 8x8 replies that could not be read (bad or missing fields) and were left out of the metrics.',
          fieldConfig: {
            defaults: {
              unit: 'none',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                  {
                    color: 'orange',
                    value: 1,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
              decimals: 0,
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'value',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 12,
            y: 0,
            w: 4,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_invalid_records{%(sub)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Since last success',
          description: 'Time since the exporter last read the 8x8 list successfully, for the subaccount that has waited longest.',
          fieldConfig: {
            defaults: {
              unit: 's',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                  {
                    color: 'orange',
                    value: 600,
                  },
                  {
                    color: 'red',
                    value: 3600,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
              decimals: 0,
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'value',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 16,
            y: 0,
            w: 4,
            h: 4,
          },
          targets: [
            g.target(|||
              time() - min(eightbyeight_last_success_timestamp_seconds{%(sub)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Exporter version',
          description: 'Version of eightbyeight-exporter serving /metrics (from eightbyeight_exporter_build_info).',
          fieldConfig: {
            defaults: {
              unit: 'none',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'none',
            graphMode: 'none',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'name',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 20,
            y: 0,
            w: 4,
            h: 4,
          },
          targets: [
            g.target(|||
              count by (%(c)sversion) (eightbyeight_exporter_build_info{%(base)s})
            ||| % s, '{{version}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: '8x8 API reachable over time',
          description: 'eightbyeight_up per subaccount over time (1 = the scrape read the API, 0 = it failed).',
          fieldConfig: {
            defaults: {
              unit: 'none',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [
                {
                  type: 'value',
                  options: {
                    '0': {
                      text: 'DOWN',
                      color: 'red',
                      index: 1,
                    },
                    '1': {
                      text: 'UP',
                      color: 'green',
                      index: 0,
                    },
                  },
                },
              ],
              min: 0,
              max: 1,
              decimals: 0,
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 0,
            y: 4,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              eightbyeight_up{%(sub)s}
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Scrape duration',
          description: 'How long each scrape took to fetch and convert the 8x8 list, per subaccount. Keep it well below the Prometheus scrape_timeout.',
          fieldConfig: {
            defaults: {
              unit: 's',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 12,
            y: 4,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              eightbyeight_scrape_duration_seconds{%(sub)s}
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'API requests',
          description: 'Requests the exporter sent to the 8x8 API per second, per subaccount.',
          fieldConfig: {
            defaults: {
              unit: 'reqps',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 0,
            y: 12,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)ssubaccount) (rate(eightbyeight_api_requests_total{%(sub)s}[$__rate_interval]))
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'API failures by reason',
          description: 'Failed 8x8 API requests per second by subaccount and reason (unauthorized, rate_limited, timeout, server_error, invalid_response, ...).',
          fieldConfig: {
            defaults: {
              unit: 'reqps',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 12,
            y: 12,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)ssubaccount, reason) (rate(eightbyeight_api_request_failures_total{%(sub)s}[$__rate_interval]))
            ||| % s, '{{subaccount}} {{reason}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'API latency',
          description: '8x8 API response time per subaccount: median and 99th percentile from the request duration histogram.',
          fieldConfig: {
            defaults: {
              unit: 's',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 0,
            y: 20,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              histogram_quantile(0.5, sum by (%(c)ssubaccount, le) (rate(eightbyeight_api_request_duration_seconds_bucket{%(sub)s}[$__rate_interval])))
            ||| % s, 'p50 {{subaccount}}', 'A'),
            g.target(|||
              histogram_quantile(0.99, sum by (%(c)ssubaccount, le) (rate(eightbyeight_api_request_duration_seconds_bucket{%(sub)s}[$__rate_interval])))
            ||| % s, 'p99 {{subaccount}}', 'B'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Invalid records over time',
          description: 'Records per subaccount that the exporter could not read in the latest reply.',
          fieldConfig: {
            defaults: {
              unit: 'none',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
              decimals: 0,
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 12,
            y: 20,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              eightbyeight_invalid_records{%(sub)s}
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Numbers reported vs listed',
          description: 'totalNumbers as reported by 8x8 against the valid records the exporter read. A gap between them means records were missing or invalid.',
          fieldConfig: {
            defaults: {
              unit: 'none',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
              decimals: 0,
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 0,
            y: 28,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              eightbyeight_virtual_numbers{%(sub)s}
            ||| % s, 'reported {{subaccount}}', 'A'),
            g.target(|||
              eightbyeight_virtual_numbers_listed{%(sub)s}
            ||| % s, 'listed {{subaccount}}', 'B'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Time since last successful fetch',
          description: "Seconds since each subaccount's number list was last read successfully. Grows while the 8x8 API is failing.",
          fieldConfig: {
            defaults: {
              unit: 's',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 12,
            y: 28,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              time() - eightbyeight_last_success_timestamp_seconds{%(sub)s}
            ||| % s, '{{subaccount}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Webhook callbacks by outcome',
          description: 'Authenticated callbacks from 8x8 per second by outcome: accepted, duplicate, unknown_event_type, or why they were refused (malformed_json, invalid_event, body_too_large, body_timeout, subaccount_not_allowed, overloaded). Wrong Authorization values get 401 and are not counted.',
          fieldConfig: {
            defaults: {
              unit: 'reqps',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 0,
            y: 36,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)soutcome) (rate(eightbyeight_webhook_requests_total{%(base)s}[$__rate_interval]))
            ||| % s, '{{outcome}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Time since last callback',
          description: 'Seconds since the webhook receiver last accepted an event per subaccount and type (vnu, vss). The alert EightByEightWebhooksStopped fires after 6 hours without any.',
          fieldConfig: {
            defaults: {
              unit: 's',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 10,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'none',
                  group: 'A',
                },
                axisSoftMin: 0,
              },
              color: {
                mode: 'palette-classic',
              },
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'green',
                    value: null,
                  },
                ],
              },
              mappings: [],
            },
            overrides: [],
          },
          options: {
            legend: {
              displayMode: 'table',
              placement: 'bottom',
              showLegend: true,
              calcs: [
                'lastNotNull',
                'max',
              ],
            },
            tooltip: {
              mode: 'multi',
              sort: 'desc',
            },
          },
          gridPos: {
            x: 12,
            y: 36,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              time() - max by (%(c)ssubaccount, event_type) (eightbyeight_webhook_last_event_timestamp_seconds{%(sub)s})
            ||| % s, '{{subaccount}} {{event_type}}', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Prepaid balance',
          description: 'The prepaid balance of the 8x8 account as last read, in its currency (eightbyeight_account_balance, --balance.account-id; read every --balance.interval). Red below the EightByEightBalanceLow threshold.',
          fieldConfig: {
            defaults: {
              unit: 'none',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'red',
                    value: null,
                  },
                  {
                    color: 'green',
                    value: config.balanceLowThreshold,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
              decimals: 2,
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'value',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'value_and_name',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 0,
            y: 44,
            w: 12,
            h: 4,
          },
          targets: [
            g.target(|||
              max by (%(c)scurrency) (eightbyeight_account_balance{%(base)s})
            ||| % s { window: config.balanceTrendWindow }, '{{currency}}', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Prepaid balance: days left',
          description: 'Days until the prepaid balance reaches 0 at the rate it fell over the last %s (deriv), as EightByEightBalanceRunningOut judges it; no value while it does not fall.' % config.balanceTrendWindow,
          fieldConfig: {
            defaults: {
              unit: 'd',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'red',
                    value: null,
                  },
                  {
                    color: 'green',
                    value: config.balanceRunningOutDays,
                  },
                ],
              },
              color: {
                mode: 'thresholds',
              },
              mappings: [],
              decimals: 1,
            },
            overrides: [],
          },
          options: {
            reduceOptions: {
              calcs: [
                'lastNotNull',
              ],
              fields: '',
              values: false,
            },
            colorMode: 'value',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'value_and_name',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 12,
            y: 44,
            w: 12,
            h: 4,
          },
          targets: [
            g.target(|||
              max by (%(c)scurrency) (
                (
                  eightbyeight_account_balance{%(base)s}
                  /
                  -deriv(eightbyeight_account_balance{%(base)s}[%(window)s])
                  / 86400
                )
                and
                deriv(eightbyeight_account_balance{%(base)s}[%(window)s]) < 0
              )
            ||| % s { window: config.balanceTrendWindow }, '{{currency}}', 'A'),
          ],
        },
      ],
    ),
  },
}
