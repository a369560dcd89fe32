// Plain-jsonnet building blocks of the dashboards (no grafonnet: nothing to download).
{
  datasource: { type: 'prometheus', uid: '${datasource}' },

  // The matchers every query carries, as %(name)s keys for the queries' format strings:
  //   base     cluster (when shown), the configured job selector, $job and $instance;
  //   sub      base and $subaccount;
  //   numbers  sub, $country and $number_type;
  //   c        'cluster, ' when shown, to lead every by (...) and on (...) list.
  selectors(config):: {
    local cluster = if config.showMultiCluster then ['%s="$cluster"' % config.clusterLabel] else [],
    base: std.join(', ', cluster + [config.eightbyeightSelector, 'job=~"$job"', 'instance=~"$instance"']),
    sub: self.base + ', subaccount=~"$subaccount"',
    numbers: self.sub + ', country=~"$country", number_type=~"$number_type"',
    c: if config.showMultiCluster then config.clusterLabel + ', ' else '',
  },

  local trimmed(expr) = std.rstripChars(expr, '\n'),

  target(expr, legend='__auto', refId='A'):: {
    datasource: $.datasource,
    refId: refId,
    editorMode: 'code',
    expr: trimmed(expr),
    legendFormat: legend,
    range: true,
    instant: false,
  },

  tableTarget(expr, legend='__auto', refId='A'):: $.target(expr, legend, refId) {
    format: 'table',
    range: false,
    instant: true,
  },

  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    hide: 0,
    includeAll: false,
    multi: false,
    options: [],
    refresh: 1,
    regex: '',
    skipUrlSync: false,
  },

  // A label_values() variable: multi-select with "All" as `.*`, refreshed on time change.
  queryVariable(name, label, selector, labelName=name):: {
    local query = 'label_values(%s, %s)' % [selector, labelName],
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    query: query,
    refresh: 2,
    sort: 1,
    multi: true,
    includeAll: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    regex: '',
    hide: 0,
    skipUrlSync: false,
  },

  // The cluster: one at a time, so that no panel adds up clusters; hidden when the mixin is
  // built for one cluster (its queries then carry no cluster matcher).
  clusterVariable(config):: std.mergePatch(
    $.queryVariable('cluster', 'Cluster', 'up{%s}' % config.eightbyeightSelector, config.clusterLabel),
    {
      multi: false,
      includeAll: false,
      allValue: null,
      current: null,
      hide: if config.showMultiCluster then 0 else 2,
    },
  ),

  // datasource, cluster, job and instance: every dashboard starts with these.
  targetVariables(config)::
    local clusterMatcher = if config.showMultiCluster then '%s="$cluster", ' % config.clusterLabel else '';
    [
      $.datasourceVariable,
      $.clusterVariable(config),
      $.queryVariable('job', 'Job', 'up{%s%s}' % [clusterMatcher, config.eightbyeightSelector]),
      $.queryVariable(
        'instance', 'Instance', 'up{%s%s, job=~"$job"}' % [clusterMatcher, config.eightbyeightSelector]
      ),
    ],

  // Numbers the panels in order and points them at the datasource variable.
  numbered(panels):: [
    panels[i] { id: i + 1 } + (if panels[i].type == 'row' then {} else { datasource: $.datasource })
    for i in std.range(0, std.length(panels) - 1)
  ],

  dashboard(config, name, title, description, variables, panels, annotations=[]):: {
    uid: '%s-%s' % [config.dashboardUidPrefix, name],
    title: title,
    description: description,
    tags: config.dashboardTags,
    timezone: config.dashboardTimezone,
    editable: true,
    graphTooltip: 1,
    refresh: config.dashboardRefresh,
    schemaVersion: 39,
    version: 1,
    id: null,
    fiscalYearStartMonth: 0,
    liveNow: false,
    time: { from: config.dashboardPeriod, to: 'now' },
    timepicker: {},
    links: [
      {
        title: '8x8 dashboards',
        type: 'dashboards',
        tags: [config.dashboardTags[0]],
        asDropdown: false,
        includeVars: true,
        keepTime: true,
        icon: 'external link',
        targetBlank: false,
        tooltip: '',
        url: '',
      },
    ],
    annotations: { list: annotations },
    templating: { list: $.targetVariables(config) + variables },
    panels: $.numbered(panels),
  },
}
