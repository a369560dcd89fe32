// 8x8 Number Health: overview
local g = import 'lib.libsonnet';

{
  local config = $._config,
  local s = g.selectors(config),

  grafanaDashboards+:: {
    'eightbyeight-overview.json': g.dashboard(
      config,
      'overview',
      '8x8 Number Health: overview',
      'Health, status and cost of 8x8 virtual numbers, from eightbyeight-exporter.',
      variables=[
        g.queryVariable('subaccount', 'Subaccount', 'eightbyeight_up{%(base)s}' % s),
        g.queryVariable('country', 'Country', 'eightbyeight_virtual_numbers_by_status{%(sub)s}' % s),
        g.queryVariable('number_type', 'Number type', 'eightbyeight_virtual_numbers_by_status{%(sub)s, country=~"$country"}' % s),
      ],
      annotations=[
        {
          name: '8x8 alerts firing',
          datasource: {
            type: 'prometheus',
            uid: '${datasource}',
          },
          enable: true,
          iconColor: 'red',
          step: '1m',
          titleFormat: '{{alertname}}',
          textFormat: '{{subaccount}} severity={{severity}}',
          tagKeys: 'alertname,severity,subaccount',
          useValueForTime: false,
          expr: 'ALERTS{%(base)s, alertstate="firing", alertname=~"EightByEight.*"}' % s,
        },
        {
          name: 'Numbers pushed Unhealthy',
          datasource: {
            type: 'prometheus',
            uid: '${datasource}',
          },
          enable: true,
          iconColor: 'orange',
          step: '1m',
          titleFormat: '{{msisdn}} pushed Unhealthy',
          textFormat: 'subaccount {{subaccount}}',
          tagKeys: 'subaccount,msisdn',
          useValueForTime: false,
          expr: 'eightbyeight_number_pushed_status{%(sub)s, operational_status="unhealthy"} == 1' % s,
        },
      ],
      panels=[
        {
          type: 'stat',
          title: 'Numbers',
          description: 'Virtual numbers read from the 8x8 list, for the selected subaccounts, countries and number types (all operational statuses).',
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
            x: 0,
            y: 0,
            w: 3,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_by_status{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Healthy share',
          description: 'Healthy numbers as a share of the numbers whose last health check gave a result (healthy + unhealthy). Numbers with unknown health or the check turned off are left out; no value when none has a result.',
          fieldConfig: {
            defaults: {
              unit: 'percentunit',
              thresholds: {
                mode: 'absolute',
                steps: [
                  {
                    color: 'red',
                    value: null,
                  },
                  {
                    color: 'orange',
                    value: 0.9,
                  },
                  {
                    color: 'green',
                    value: 0.99,
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
            x: 3,
            y: 0,
            w: 3,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_healthy{%(numbers)s})
              /
              (
                sum(eightbyeight_virtual_numbers_healthy{%(numbers)s})
                + sum(eightbyeight_virtual_numbers_unhealthy{%(numbers)s})
                > 0
              )
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Unhealthy',
          description: 'Numbers whose last 8x8 health check reported them unhealthy (numberHealth.isHealthy = false).',
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
                    color: 'red',
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
            x: 6,
            y: 0,
            w: 3,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_unhealthy{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Expiring',
          description: 'Numbers whose operational status is Expiring: renew them or they will be released.',
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
            x: 9,
            y: 0,
            w: 2,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_expiring{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Status Unhealthy',
          description: 'Numbers whose operational status is Unhealthy: 8x8 reports their calling service degraded; keep new sessions off them.',
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
            x: 11,
            y: 0,
            w: 2,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_by_status{%(numbers)s, operational_status="unhealthy"})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Health unknown',
          description: 'Numbers with no health result from 8x8 (no numberHealth in the API reply).',
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
                    color: 'yellow',
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
            x: 13,
            y: 0,
            w: 2,
            h: 4,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_health_unknown{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Oldest health check',
          description: 'Age of the oldest health-check result among the selected numbers: how stale the health information shown here can be.',
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
                    value: 172800,
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
            x: 15,
            y: 0,
            w: 3,
            h: 4,
          },
          targets: [
            g.target(|||
              max(eightbyeight_health_check_age_seconds{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Monthly rental cost',
          description: 'Sum of the monthly rental price of the selected numbers, one value per billing currency (8x8 bills each number in its own currency; totals are not converted).',
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
            colorMode: 'none',
            graphMode: 'area',
            justifyMode: 'auto',
            orientation: 'auto',
            textMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          },
          gridPos: {
            x: 18,
            y: 0,
            w: 4,
            h: 4,
          },
          targets: [
            g.target(|||
              sum by (%(c)scurrency) (eightbyeight_monthly_rental_cost{%(numbers)s})
            ||| % s, '{{currency}}', 'A'),
          ],
        },
        {
          type: 'stat',
          title: 'Subaccounts failing',
          description: 'Subaccounts whose last scrape could not read the 8x8 API (eightbyeight_up = 0). See the exporter dashboard for the reason.',
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
                    color: 'red',
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
            x: 22,
            y: 0,
            w: 2,
            h: 4,
          },
          targets: [
            g.target(|||
              count(eightbyeight_up{%(sub)s} == 0) or vector(0)
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'alertlist',
          title: 'Firing 8x8 alerts',
          description: 'Alerts from the EightByEight* Prometheus alerting rules that are pending or firing now. Needs the Prometheus data source to expose its rules (Alerting > Alert rules shows them).',
          fieldConfig: {
            defaults: {
              unit: 'none',
            },
            overrides: [],
          },
          options: {
            alertName: 'EightByEight',
            alertInstanceLabelFilter: if config.showMultiCluster then '{%s="$cluster"}' % config.clusterLabel else '',
            dashboardAlerts: false,
            groupBy: [],
            groupMode: 'default',
            maxItems: 20,
            sortOrder: 1,
            viewMode: 'list',
            stateFilter: {
              firing: true,
              pending: true,
              'error': true,
              noData: false,
              normal: false,
              inactive: false,
            },
          },
          gridPos: {
            x: 0,
            y: 4,
            w: 8,
            h: 9,
          },
        },
        {
          type: 'table',
          title: 'Unhealthy or expiring numbers',
          description: 'Numbers that are unhealthy (last check failed) or in Expiring or Unhealthy status now, with their country, type and how long ago 8x8 last checked them. Empty when all is well, or when the exporter runs with --no-collector.per-number.',
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
                ],
              },
              color: {
                mode: 'thresholds',
              },
              custom: {
                align: 'auto',
                cellOptions: {
                  type: 'auto',
                },
                filterable: true,
              },
              mappings: [],
            },
            overrides: [
              {
                matcher: {
                  id: 'byName',
                  options: 'Last checked (age)',
                },
                properties: [
                  {
                    id: 'unit',
                    value: 's',
                  },
                  {
                    id: 'decimals',
                    value: 0,
                  },
                ],
              },
            ],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: {
              show: false,
              reducer: [
                'sum',
              ],
              countRows: false,
              fields: '',
            },
            sortBy: [
              {
                displayName: 'Last checked (age)',
                desc: true,
              },
            ],
          },
          transformations: [
            {
              id: 'merge',
              options: {},
            },
            {
              id: 'organize',
              options: {
                excludeByName: {
                  Time: true,
                  'Value #A': true,
                  __name__: true,
                  job: true,
                  instance: true,
                  [config.clusterLabel]: true,
                },
                indexByName: {
                  msisdn: 0,
                  subaccount: 1,
                  country: 2,
                  number_type: 3,
                  operational_status: 4,
                  health_status: 5,
                  'Value #B': 6,
                  reference_id: 7,
                  currency: 8,
                },
                renameByName: {
                  msisdn: 'Number',
                  subaccount: 'Subaccount',
                  country: 'Country',
                  number_type: 'Type',
                  operational_status: 'Status',
                  health_status: 'Health',
                  'Value #B': 'Last checked (age)',
                  reference_id: 'Reference',
                  currency: 'Currency',
                },
              },
            },
          ],
          gridPos: {
            x: 8,
            y: 4,
            w: 16,
            h: 9,
          },
          targets: [
            g.tableTarget(|||
              (
                eightbyeight_number_info{%(numbers)s}
                  and on (%(c)sjob, instance, subaccount, msisdn)
                (eightbyeight_number_healthy{%(sub)s} == 0)
              )
              or
              eightbyeight_number_info{%(numbers)s, operational_status=~"expiring|unhealthy"}
            ||| % s, '__auto', 'A'),
            g.tableTarget(|||
              (time() - eightbyeight_number_health_last_checked_timestamp_seconds{%(sub)s})
                and on (%(c)sjob, instance, subaccount, msisdn)
              (
              (
                eightbyeight_number_info{%(numbers)s}
                  and on (%(c)sjob, instance, subaccount, msisdn)
                (eightbyeight_number_healthy{%(sub)s} == 0)
              )
              or
              eightbyeight_number_info{%(numbers)s, operational_status=~"expiring|unhealthy"}
              )
            ||| % s, '__auto', 'B'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Healthy share by country and type',
          description: 'Healthy numbers / (healthy + unhealthy) for each country and number type over time. A gap means no number in that group had a health result.',
          fieldConfig: {
            defaults: {
              unit: 'percentunit',
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
              min: 0,
              max: 1,
              decimals: 1,
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
            y: 13,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry, number_type) (eightbyeight_virtual_numbers_healthy{%(numbers)s})
              /
              (
                sum by (%(c)scountry, number_type) (
                  eightbyeight_virtual_numbers_healthy{%(numbers)s}
                  + eightbyeight_virtual_numbers_unhealthy{%(numbers)s}
                ) > 0
              )
            ||| % s, '{{country}} {{number_type}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Unhealthy numbers by country and type',
          description: 'Count of numbers whose last health check failed, per country and number type.',
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
            y: 13,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry, number_type) (eightbyeight_virtual_numbers_unhealthy{%(numbers)s})
            ||| % s, '{{country}} {{number_type}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Numbers by health state',
          description: 'Healthy, unhealthy and unknown-health numbers, and numbers with the 8x8 health check turned off (these usually also have unknown health, so the lines are not stacked).',
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
            y: 21,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum(eightbyeight_virtual_numbers_healthy{%(numbers)s})
            ||| % s, 'healthy', 'A'),
            g.target(|||
              sum(eightbyeight_virtual_numbers_unhealthy{%(numbers)s})
            ||| % s, 'unhealthy', 'B'),
            g.target(|||
              sum(eightbyeight_virtual_numbers_health_unknown{%(numbers)s})
            ||| % s, 'unknown', 'C'),
            g.target(|||
              sum(eightbyeight_virtual_numbers_health_check_disabled{%(numbers)s})
            ||| % s, 'check disabled', 'D'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Numbers by operational status',
          description: 'Numbers per 8x8 operational status (active, expiring, inactive, unhealthy and any other status the API reports), stacked: the top of the stack is the total.',
          fieldConfig: {
            defaults: {
              unit: 'none',
              custom: {
                drawStyle: 'line',
                lineWidth: 1,
                fillOpacity: 20,
                showPoints: 'never',
                spanNulls: false,
                stacking: {
                  mode: 'normal',
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
            y: 21,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)soperational_status) (eightbyeight_virtual_numbers_by_status{%(numbers)s})
            ||| % s, '{{operational_status}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Health-check age by country and type',
          description: 'Time since the oldest 8x8 health check in each country and number type. A line that keeps rising means 8x8 has stopped re-checking those numbers; the orange area starts at 2 days, the threshold of the EightByEightHealthCheckStale alert.',
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
                thresholdsStyle: {
                  mode: 'line+area',
                },
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
                  {
                    color: 'orange',
                    value: 172800,
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
            y: 29,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              max by (%(c)scountry, number_type) (eightbyeight_health_check_age_seconds{%(numbers)s})
            ||| % s, '{{country}} {{number_type}}', 'A'),
          ],
        },
        {
          type: 'table',
          title: 'Monthly rental cost by country and type',
          description: 'Monthly rental cost per country, number type and billing currency, largest first. Amounts are in the currency shown; they are not converted.',
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
              custom: {
                align: 'auto',
                cellOptions: {
                  type: 'auto',
                },
                filterable: true,
              },
              mappings: [],
              decimals: 2,
            },
            overrides: [],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: {
              show: false,
              reducer: [
                'sum',
              ],
              countRows: false,
              fields: '',
            },
            sortBy: [
              {
                displayName: 'Monthly rental',
                desc: true,
              },
            ],
          },
          transformations: [
            {
              id: 'organize',
              options: {
                excludeByName: {
                  Time: true,
                },
                indexByName: {
                  country: 0,
                  number_type: 1,
                  currency: 2,
                  Value: 3,
                },
                renameByName: {
                  country: 'Country',
                  number_type: 'Type',
                  currency: 'Currency',
                  Value: 'Monthly rental',
                },
              },
            },
          ],
          gridPos: {
            x: 12,
            y: 29,
            w: 12,
            h: 8,
          },
          targets: [
            g.tableTarget(|||
              sum by (%(c)scountry, number_type, currency) (eightbyeight_monthly_rental_cost{%(numbers)s})
            ||| % s, '__auto', 'A'),
          ],
        },
        {
          type: 'row',
          title: 'Call quality (pushed by 8x8: session summaries and number updates)',
          collapsed: false,
          panels: [],
          gridPos: {
            x: 0,
            y: 37,
            w: 24,
            h: 1,
          },
        },
        {
          type: 'timeseries',
          title: 'Mean MOS by country',
          description: "Mean Opinion Score of call legs on the subaccounts' numbers, per country of the virtual number (1 bad to 5 excellent; below 3.6 is 8x8's poor band). From session summaries 8x8 pushes to the webhook receiver.",
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
              decimals: 2,
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
            y: 38,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry) (rate(eightbyeight_call_mos_sum{%(sub)s, country=~"$country"}[$__rate_interval]))
              /
              sum by (%(c)scountry) (rate(eightbyeight_call_mos_count{%(sub)s, country=~"$country"}[$__rate_interval]))
            ||| % s, '{{country}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Low MOS (10th percentile) by country',
          description: "The MOS that 10% of call legs fall below, per country, estimated from the MOS histogram (buckets at 8x8's band edges 3.1, 3.6, 4.0 and 4.3).",
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
              decimals: 2,
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
            y: 38,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              histogram_quantile(0.1, sum by (%(c)scountry, le) (rate(eightbyeight_call_mos_bucket{%(sub)s, country=~"$country"}[$__rate_interval])))
            ||| % s, '{{country}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Packet loss by country',
          description: 'Mean packet loss of call legs per country of the virtual number, as 8x8 measured it on real calls.',
          fieldConfig: {
            defaults: {
              unit: 'percentunit',
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
            y: 46,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry) (rate(eightbyeight_call_packet_loss_ratio_sum{%(sub)s, country=~"$country"}[$__rate_interval]))
              /
              sum by (%(c)scountry) (rate(eightbyeight_call_packet_loss_ratio_count{%(sub)s, country=~"$country"}[$__rate_interval]))
            ||| % s, '{{country}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Jitter by country',
          description: 'Mean jitter of call legs per country of the virtual number, as 8x8 measured it on real calls.',
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
            y: 46,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry) (rate(eightbyeight_call_jitter_seconds_sum{%(sub)s, country=~"$country"}[$__rate_interval]))
              /
              sum by (%(c)scountry) (rate(eightbyeight_call_jitter_seconds_count{%(sub)s, country=~"$country"}[$__rate_interval]))
            ||| % s, '{{country}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Call sessions by outcome and country',
          description: 'Finished call sessions per second by session status (completed, no_answer, busy, canceled, failed, error) and country of the virtual number.',
          fieldConfig: {
            defaults: {
              unit: 'ops',
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
            y: 54,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry, session_status) (rate(eightbyeight_call_sessions_total{%(sub)s, country=~"$country"}[$__rate_interval]))
            ||| % s, '{{country}} {{session_status}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Call failure ratio by country',
          description: 'Share of call sessions that ended FAILED or ERROR, per country of the virtual number. The alert EightByEightCallFailureRatioHigh fires above 20% over 15 minutes.',
          fieldConfig: {
            defaults: {
              unit: 'percentunit',
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
            y: 54,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)scountry) (rate(eightbyeight_call_sessions_total{%(sub)s, country=~"$country", session_status=~"failed|error"}[$__rate_interval]))
              /
              (sum by (%(c)scountry) (rate(eightbyeight_call_sessions_total{%(sub)s, country=~"$country"}[$__rate_interval])) > 0)
            ||| % s, '{{country}}', 'A'),
          ],
        },
        {
          type: 'table',
          title: 'Calls and quality per number',
          description: 'Per virtual number: share of call legs that failed and mean MOS over the rate interval, worst first. Only numbers 8x8 listed in its number updates, and only with --collector.per-number (the default).',
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
              custom: {
                align: 'auto',
                cellOptions: {
                  type: 'auto',
                },
                filterable: true,
              },
              mappings: [],
              decimals: 2,
            },
            overrides: [
              {
                matcher: {
                  id: 'byName',
                  options: 'Failed share',
                },
                properties: [
                  {
                    id: 'unit',
                    value: 'percentunit',
                  },
                ],
              },
            ],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: {
              show: false,
              reducer: [
                'sum',
              ],
              countRows: false,
              fields: '',
            },
            sortBy: [
              {
                displayName: 'Failed share',
                desc: true,
              },
            ],
          },
          transformations: [
            {
              id: 'merge',
              options: {},
            },
            {
              id: 'organize',
              options: {
                excludeByName: {
                  Time: true,
                },
                indexByName: {
                  msisdn: 0,
                  subaccount: 1,
                  'Value #A': 2,
                  'Value #B': 3,
                },
                renameByName: {
                  msisdn: 'Number',
                  subaccount: 'Subaccount',
                  'Value #A': 'Failed share',
                  'Value #B': 'Mean MOS',
                },
              },
            },
          ],
          gridPos: {
            x: 0,
            y: 62,
            w: 12,
            h: 8,
          },
          targets: [
            g.tableTarget(|||
              sum by (%(c)ssubaccount, msisdn) (rate(eightbyeight_number_call_legs_total{%(sub)s, outcome="failed"}[$__rate_interval]))
              /
              (sum by (%(c)ssubaccount, msisdn) (rate(eightbyeight_number_call_legs_total{%(sub)s}[$__rate_interval])) > 0)
            ||| % s, '__auto', 'A'),
            g.tableTarget(|||
              sum by (%(c)ssubaccount, msisdn) (rate(eightbyeight_number_call_mos_sum{%(sub)s}[$__rate_interval]))
              /
              (sum by (%(c)ssubaccount, msisdn) (rate(eightbyeight_number_call_mos_count{%(sub)s}[$__rate_interval])) > 0)
            ||| % s, '__auto', 'B'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Numbers by pushed status',
          description: 'Numbers per operational status as 8x8 last pushed it in virtual number updates (VNU), including Unhealthy, which the numbers list does not show.',
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
            y: 62,
            w: 12,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)soperational_status) (eightbyeight_pushed_virtual_numbers_by_status{%(sub)s})
            ||| % s, '{{operational_status}}', 'A'),
          ],
        },
        {
          type: 'timeseries',
          title: 'Session errors by 8x8 error code',
          description: 'Call sessions that ended with an error, per second, by the errorCode 8x8 gave (for example -2004 no coverage, -2010 trunk capacity exceeded).',
          fieldConfig: {
            defaults: {
              unit: 'ops',
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
            y: 70,
            w: 24,
            h: 8,
          },
          targets: [
            g.target(|||
              sum by (%(c)serror_code) (rate(eightbyeight_call_session_errors_total{%(sub)s}[$__rate_interval]))
            ||| % s, '{{error_code}}', 'A'),
          ],
        },
      ],
    ),
  },
}
