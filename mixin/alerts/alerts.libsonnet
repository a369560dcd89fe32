// Alerting rules. Every alert names its runbook section (docs/runbook.md), has a summary that
// is a plain sentence and a description with the details, and keeps the cluster label.
local promql = import '../lib/promql.libsonnet';

{
  local config = $._config,
  local sel(extra='') = promql.selector(config, extra),
  local by(names) = promql.labels(config, names),
  local target = by(['job', 'instance', 'subaccount']),
  local percent(ratio) = '%d%%' % std.floor(ratio * 100 + 0.5),
  // A Prometheus duration of one unit ('15m') in words: '15 minutes', or '15-minute' before a
  // noun. The texts state every threshold and window from the values the expressions use, so
  // they cannot drift apart (tests/stack/test_alert_texts.py).
  local units = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' },
  local count(duration) = std.parseInt(std.substr(duration, 0, std.length(duration) - 1)),
  local unit(duration) = units[duration[std.length(duration) - 1]],
  local spoken(duration) =
    '%d %s%s' % [count(duration), unit(duration), if count(duration) == 1 then '' else 's'],
  local hyphenated(duration) = '%d-%s' % [count(duration), unit(duration)],
  local held(name) = spoken(config.forDurations[name]),
  // The window of eightbyeight:api_auth_failures:increase15m (rules/rules.libsonnet).
  local authFailureWindow = '15m',
  // Call quality and outcomes are judged over this window, with at least
  // callMinimumCount legs or sessions in it.
  local callWindow = '15m',
  // A 401 in each such window, for the alert's `for`, fires the webhook authentication alert.
  local webhookAuthWindow = '5m',

  local alert(name, severity, expr, summary, description) = {
    alert: name,
    expr: expr,
    'for': config.forDurations[name],
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: config.runbookURLPattern % std.asciiLower(name),
    },
  },

  // An inventory alert: the current value, or while reads fail, the last value of the hour
  // (docs/runbook.md, "How the alerts treat gaps in the data").
  local bridged(metric, condition) = |||
    (%(metric)s%(sel)s %(condition)s)
    or
    (
      last_over_time(%(metric)s%(sel)s[1h]) %(condition)s
      unless on (%(target)s) eightbyeight_up%(sel)s == 1
    )
  ||| % { metric: metric, sel: sel(), condition: condition, target: target },

  local statusBridged(status, condition) = |||
    (eightbyeight_virtual_numbers_by_status%(sel)s %(condition)s)
    or
    (
      last_over_time(eightbyeight_virtual_numbers_by_status%(sel)s[1h]) %(condition)s
      unless on (%(target)s) eightbyeight_up%(up)s == 1
    )
  ||| % {
    sel: sel('operational_status="%s"' % status),
    up: sel(),
    condition: condition,
    target: target,
  },

  local shareHigh(severity, threshold, consequence) = alert(
    'EightByEightNumbersUnhealthyShareHigh',
    severity,
    bridged('eightbyeight:virtual_numbers_unhealthy:ratio', '> %g' % threshold),
    'More than %s of the numbers of a country and type are unhealthy.' % percent(threshold),
    '8x8 Number Health reports {{ $value | humanizePercentage }} of the {{ $labels.country }} '
    + 'numbers of type {{ $labels.number_type }} in subaccount {{ $labels.subaccount }} as '
    + 'unhealthy (more than %s). %s' % [percent(threshold), consequence],
  ),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'eightbyeight.exporter',
        rules: [
          alert(
            'EightByEightExporterDown',
            'critical',
            |||
              up%s == 0
            ||| % sel(),
            'An 8x8 exporter target cannot be scraped.',
            'Prometheus cannot scrape the eightbyeight exporter target {{ $labels.instance }} '
            + '(job {{ $labels.job }}). No virtual number health is being collected for it, so '
            + 'no other 8x8 alert can fire for it.',
          ),
          alert(
            'EightByEightApiAuthenticationFailed',
            'critical',
            |||
              (eightbyeight_up%(sel)s == 0)
              + on (%(sub)s) group_left ()
              (eightbyeight:api_auth_failures:increase15m > 0)
            ||| % { sel: sel(), sub: by(['subaccount']) },
            'The 8x8 API rejects the key of a subaccount.',
            'The exporter cannot read the virtual numbers of subaccount {{ $labels.subaccount }} '
            + 'because the 8x8 API answers 401 Unauthorized or 403 Forbidden ({{ $value | humanize }} '
            + 'authentication failures in the last %s). ' % spoken(authFailureWindow)
            + 'The API key is wrong, expired or revoked, or lacks access to this subaccount.',
          ),
          alert(
            'EightByEightApiDown',
            'warning',
            |||
              (eightbyeight_up%(sel)s == 0)
              unless on (%(sub)s)
              (eightbyeight:api_auth_failures:increase15m > 0)
            ||| % { sel: sel(), sub: by(['subaccount']) },
            'The 8x8 API cannot be read for a subaccount.',
            'The exporter cannot read the virtual numbers of subaccount {{ $labels.subaccount }} '
            + '(target {{ $labels.instance }}) and the failures are not authentication errors '
            + '(no 401 or 403 in the last %s): 8x8 outage,' % spoken(authFailureWindow)
            + ' rate limiting, timeouts, network or TLS trouble, or an unexpected '
            + 'response. eightbyeight_api_request_failures_total shows the reason.',
          ),
          alert(
            'EightByEightInvalidRecordsSkipped',
            'warning',
            |||
              last_over_time(
                (eightbyeight_invalid_records%(sel)s and on (%(target)s) eightbyeight_up%(sel)s == 1)[1h:1m]
              ) > 0
            ||| % { sel: sel(), target: target },
            'The exporter skips invalid number records of a subaccount.',
            '{{ $value | humanize }} records of the 8x8 virtual number list of subaccount '
            + '{{ $labels.subaccount }} are skipped as invalid, so counts, health and cost metrics '
            + 'leave them out.',
          ),
        ],
      },
      {
        name: 'eightbyeight.numbers',
        rules: [
          alert(
            'EightByEightNumberUnhealthy',
            'warning',
            bridged('eightbyeight_number_healthy', '== 0'),
            'A virtual number is unhealthy.',
            '8x8 Number Health has reported virtual number {{ $labels.msisdn }} of subaccount '
            + '{{ $labels.subaccount }} as unhealthy for a sustained period. Calls to this number '
            + 'may not reach you.',
          ),
          shareHigh(
            'critical',
            config.unhealthyShareCritical,
            'A large part of your reachability there is gone: a carrier, routing or country-wide '
            + 'problem is likely.',
          ),
          shareHigh(
            'warning',
            config.unhealthyShareWarning,
            'Several numbers failing together point to a shared cause rather than one '
            + 'misconfigured number.',
          ),
          alert(
            'EightByEightNumbersStatusUnhealthy',
            'warning',
            statusBridged('unhealthy', '> 0'),
            'Virtual numbers have the operational status Unhealthy.',
            '8x8 gives {{ $value | humanize }} virtual numbers ({{ $labels.country }}, type '
            + '{{ $labels.number_type }}) of subaccount {{ $labels.subaccount }} the operational '
            + 'status Unhealthy: their calling service is degraded and 8x8 advises against using '
            + 'them for new sessions.',
          ),
          alert(
            'EightByEightNumbersExpiring',
            'warning',
            bridged('eightbyeight_virtual_numbers_expiring', '> 0'),
            'Virtual numbers are expiring.',
            '{{ $value | humanize }} virtual numbers ({{ $labels.country }}, type '
            + '{{ $labels.number_type }}) of subaccount {{ $labels.subaccount }} have the '
            + 'operational status Expiring. Unless renewed they will be released and stop '
            + 'receiving calls.',
          ),
          alert(
            'EightByEightHealthCheckStale',
            'warning',
            bridged('eightbyeight_health_check_age_seconds', '> %d' % config.healthCheckStaleSeconds),
            'The 8x8 health checks of a group of numbers are stale.',
            'The oldest 8x8 Number Health check among the {{ $labels.country }} numbers of type '
            + '{{ $labels.number_type }} in subaccount {{ $labels.subaccount }} is '
            + '{{ $value | humanizeDuration }} old (threshold %s). ' % (
              if config.healthCheckStaleSeconds % 86400 == 0
              then '%d days' % (config.healthCheckStaleSeconds / 86400)
              else '%d seconds' % config.healthCheckStaleSeconds
            )
            + 'Their health status can no longer be trusted.',
          ),
          alert(
            'EightByEightHealthCheckDisabled',
            'info',
            bridged('eightbyeight_virtual_numbers_health_check_disabled', '> 0'),
            'Health checks are disabled on some virtual numbers.',
            '8x8 Number Health checks are disabled on {{ $value | humanize }} virtual numbers '
            + '({{ $labels.country }}, type {{ $labels.number_type }}) of subaccount '
            + '{{ $labels.subaccount }}. No unhealthy alert can fire for them.',
          ),
          alert(
            'EightByEightNumbersDisappeared',
            'warning',
            |||
              (
                max_over_time(eightbyeight_virtual_numbers%(sel)s[1h])
                - last_over_time(eightbyeight_virtual_numbers%(sel)s[1h])
              ) > 0
            ||| % { sel: sel() },
            'Virtual numbers disappeared from a subaccount.',
            'Subaccount {{ $labels.subaccount }} holds {{ $value | humanize }} fewer virtual '
            + 'numbers than at its peak in the last hour (totalNumbers reported by 8x8). Numbers '
            + 'were released, ported out or moved; calls to them no longer reach you.',
          ),
        ],
      },
      // Pushed events (the webhook receiver): call quality and outcomes from 8x8's session
      // summaries (VSS), pushed status from virtual number updates (VNU). Ratios need a
      // minimum of traffic, so one bad call on a quiet number does not page anyone.
      {
        name: 'eightbyeight.calls',
        rules: [
          alert(
            'EightByEightCallQualityDegraded',
            'warning',
            |||
              (
                sum by (%(group)s) (rate(eightbyeight_call_mos_sum%(sel)s[%(window)s]))
                /
                sum by (%(group)s) (rate(eightbyeight_call_mos_count%(sel)s[%(window)s]))
              ) < %(threshold)g
              and on (%(group)s)
              sum by (%(group)s) (increase(eightbyeight_call_mos_count%(sel)s[%(window)s])) >= %(minimum)d
            ||| % {
              group: by(['job', 'instance', 'subaccount', 'country']),
              sel: sel(),
              window: callWindow,
              threshold: config.callMosThreshold,
              minimum: config.callMinimumCount,
            },
            'Call quality in a country is degraded.',
            'The mean Mean Opinion Score of the call legs on the {{ $labels.country }} virtual '
            + 'numbers of subaccount {{ $labels.subaccount }} was {{ $value | printf "%.2f" }} '
            + 'over the last %s, ' % spoken(callWindow)
            + "below %g (8x8's poor band or worse), " % config.callMosThreshold
            + 'with at least %d legs with quality data. ' % config.callMinimumCount
            + '8x8 measured it on real calls (session summaries).',
          ),
          alert(
            'EightByEightCallFailureRatioHigh',
            'warning',
            |||
              (
                sum by (%(group)s) (
                  rate(eightbyeight_call_sessions_total%(failed)s[%(window)s])
                )
                /
                sum by (%(group)s) (rate(eightbyeight_call_sessions_total%(sel)s[%(window)s]))
              ) > %(threshold)g
              and on (%(group)s)
              sum by (%(group)s) (increase(eightbyeight_call_sessions_total%(sel)s[%(window)s])) >= %(minimum)d
            ||| % {
              group: by(['job', 'instance', 'subaccount', 'country']),
              sel: sel(),
              failed: sel('session_status=~"failed|error"'),
              window: callWindow,
              threshold: config.callFailureRatioThreshold,
              minimum: config.callMinimumCount,
            },
            'Too many calls in a country fail.',
            '{{ $value | humanizePercentage }} of the call sessions on the {{ $labels.country }} '
            + 'virtual numbers of subaccount {{ $labels.subaccount }} ended FAILED or ERROR in the '
            + 'last %s (more than %s, ' % [spoken(callWindow), percent(config.callFailureRatioThreshold)]
            + 'with at least %d sessions). ' % config.callMinimumCount
            + "eightbyeight_call_session_errors_total shows 8x8's error codes.",
          ),
          alert(
            'EightByEightNumberPushedUnhealthy',
            'warning',
            |||
              eightbyeight_number_pushed_status%s == 1
            ||| % sel('operational_status="unhealthy"'),
            'A virtual number was pushed as Unhealthy by 8x8.',
            "8x8's last virtual number update for {{ $labels.msisdn }} of subaccount "
            + '{{ $labels.subaccount }} says Unhealthy: its calling service is degraded and it '
            + 'should not be used for new sessions.',
          ),
          alert(
            'EightByEightWebhooksStopped',
            'warning',
            |||
              (
                sum by (%(target)s) (increase(eightbyeight_webhook_events_total%(sel)s[%(hours)dh])) == 0
                and on (%(instance)s)
                (time() - process_start_time_seconds%(sel)s) > %(seconds)d
              )
              and on (%(sub)s)
              sum by (%(sub)s) (eightbyeight_virtual_numbers_by_status%(active)s) > 0
            ||| % {
              target: target,
              instance: by(['job', 'instance']),
              sub: by(['subaccount']),
              sel: sel(),
              active: sel('operational_status="active"'),
              hours: config.webhooksSilentHours,
              seconds: config.webhooksSilentHours * 3600,
            },
            'No 8x8 callbacks arrived for a subaccount in %d hours.' % config.webhooksSilentHours,
            'The webhook receiver {{ $labels.instance }} has accepted no virtual number update or '
            + 'session summary for subaccount {{ $labels.subaccount }} in '
            + '%d hours, while the numbers list shows active numbers. ' % config.webhooksSilentHours
            + 'The webhooks at 8x8 may be disabled, point elsewhere, or be refused here (wrong '
            + 'Authorization value, network, TLS).',
          ),
          // Every 401 is counted by reason, never by what was sent: steady ones mean the
          // Authorization value registered at 8x8 and the one configured here differ.
          alert(
            'EightByEightWebhookAuthenticationFailing',
            'warning',
            |||
              sum by (%(instance)s) (
                increase(eightbyeight_webhook_requests_total%(sel)s[%(window)s])
              ) >= 1
            ||| % {
              window: webhookAuthWindow,
              instance: by(['job', 'instance']),
              sel: sel('outcome="unauthorized"'),
            },
            'Callbacks from 8x8 fail authentication.',
            'The webhook receiver {{ $labels.instance }} refused callbacks with 401 in every '
            + '%s window ' % hyphenated(webhookAuthWindow)
            + 'for the last %s ' % held('EightByEightWebhookAuthenticationFailing')
            + '({{ $value | printf "%.0f" }} in the last ' + '%s): ' % spoken(webhookAuthWindow)
            + 'the Authorization value 8x8 sends does not match the one configured '
            + 'here, so pushed updates and call summaries are lost.',
          ),
          // Only with --collector.webhooks, which reads the webhook list registered at 8x8.
          alert(
            'EightByEightWebhookMisconfigured',
            'warning',
            |||
              (eightbyeight_webhook_enabled%(sel)s == 0)
              or
              (eightbyeight_webhook_auth_header_set%(sel)s == 0)
            ||| % { sel: sel() },
            'A webhook at 8x8 is disabled or sends no Authorization value.',
            "8x8's webhook list for subaccount {{ $labels.subaccount }} has no enabled "
            + '{{ $labels.event_type | toUpper }} webhook, or it has no httpAuthHeader. Without it the '
            + "exporter's receiver gets no {{ $labels.event_type | toUpper }} callbacks, or refuses them (401).",
          ),
        ],
      },
      // The prepaid balance (--balance.account-id): its thresholds are in the account's own
      // currency (balanceLowThreshold in config.libsonnet).
      {
        name: 'eightbyeight.balance',
        rules: [
          alert(
            'EightByEightBalanceLow',
            'warning',
            |||
              eightbyeight_account_balance%(sel)s < %(threshold)g
            ||| % { sel: sel(), threshold: config.balanceLowThreshold },
            'The 8x8 prepaid balance is low.',
            'The prepaid balance of the 8x8 account read by {{ $labels.instance }} has been below '
            + '%g {{ $labels.currency }} ' % config.balanceLowThreshold
            + 'for %s ' % held('EightByEightBalanceLow')
            + '({{ $value | printf "%.2f" }} now). When it runs out, 8x8 stops the services '
            + 'that draw on it.',
          ),
          alert(
            'EightByEightBalanceRunningOut',
            'warning',
            |||
              (
                eightbyeight_account_balance%(sel)s
                /
                -deriv(eightbyeight_account_balance%(sel)s[%(window)s])
              ) < %(seconds)d
              and
              deriv(eightbyeight_account_balance%(sel)s[%(window)s]) < 0
            ||| % {
              sel: sel(),
              window: config.balanceTrendWindow,
              seconds: config.balanceRunningOutDays * 86400,
            },
            'The 8x8 prepaid balance runs out in under %d days.' % config.balanceRunningOutDays,
            'At the rate the prepaid balance read by {{ $labels.instance }} fell over the last '
            + '%s, it reaches 0 {{ $labels.currency }} in ' % config.balanceTrendWindow
            + '{{ $value | humanizeDuration }}, under %d days, ' % config.balanceRunningOutDays
            + 'for %s.' % held('EightByEightBalanceRunningOut'),
          ),
        ],
      },
    ],
  },
}
