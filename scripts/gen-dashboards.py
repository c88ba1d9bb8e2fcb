#!/usr/bin/env python3
"""Generates the Grafana dashboards in dashboards/ (classic JSON, schemaVersion 39).

Edit this file, not the JSON: `python3 scripts/gen-dashboards.py` rewrites
dashboards/*.json, and tests/dashboards.rs fails when they differ from what this
script generates. Standard library only.

    python3 scripts/gen-dashboards.py [--out DIR]
"""

import argparse
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
RUNBOOK = "https://github.com/aws-credentials-exporter/aws-credentials-exporter/blob/main/docs/runbook.md"
TAGS = ["aws", "aws-credentials-exporter", "prometheus"]

RED, ORANGE, GREEN = "red", "orange", "green"


def thresholds(*steps):
    """steps: (color, value) pairs; the first value is the base (None)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def mapping(values):
    """values: {raw value: (text, color)}."""
    return [
        {
            "type": "value",
            "options": {str(k): {"text": t, "color": c, "index": i} for i, (k, (t, c)) in enumerate(values.items())},
        }
    ]


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "refId": ref}
    if table:
        t.update({"format": "table", "instant": True, "range": False, "legendFormat": "__auto"})
    else:
        t.update({"legendFormat": legend, "instant": instant, "range": not instant})
    return t


def targets(*queries, **kw):
    return [target(q, legend, chr(ord("A") + i), **kw) for i, (q, legend) in enumerate(queries)]


def base(kind, title, description, unit, tgts, **defaults):
    field_defaults = {"unit": unit, "mappings": defaults.pop("mappings", [])}
    field_defaults["thresholds"] = defaults.pop("thresholds", thresholds((GREEN, None)))
    field_defaults.update(defaults)
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "targets": tgts,
    }


def stat(title, description, unit, tgts, color_mode="background", text_mode="auto", **defaults):
    p = base(stat.kind, title, description, unit, tgts, color={"mode": "thresholds"}, **defaults)
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text_mode,
        "wideLayout": True,
        "showPercentChange": False,
    }
    return p


stat.kind = "stat"


def timeseries(title, description, unit, tgts, threshold_style="off", **defaults):
    custom = {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter",
        "lineWidth": 1,
        "fillOpacity": 0,
        "showPoints": "never",
        "spanNulls": False,
        "axisSoftMin": defaults.pop("soft_min", None),
        "thresholdsStyle": {"mode": threshold_style},
    }
    custom = {k: v for k, v in custom.items() if v is not None}
    p = base("timeseries", title, description, unit, tgts, color={"mode": "palette-classic"}, custom=custom, **defaults)
    p["options"] = {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "min", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def state_timeline(title, description, tgts, values):
    p = base(
        "state-timeline",
        title,
        description,
        "none",
        tgts,
        mappings=mapping(values),
        color={"mode": "thresholds"},
        custom={"fillOpacity": 70, "lineWidth": 0},
    )
    p["options"] = {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return p


def table(title, description, unit, expr, value_name, sort_desc, **defaults):
    p = base(
        "table",
        title,
        description,
        unit,
        [target(expr, table=True)],
        custom={"align": "auto", "cellOptions": {"type": "color-text"}},
        color={"mode": "thresholds"},
        **defaults,
    )
    p["options"] = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": ""},
        "sortBy": [{"displayName": value_name, "desc": sort_desc}],
    }
    p["transformations"] = [
        {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}, "renameByName": {"Value": value_name}}}
    ]
    return p


def layout(rows):
    """rows: [(row title or None, [(panel, width, height), ...]), ...] -> panels with ids and gridPos."""
    panels, y, next_id = [], 0, 1
    for title, items in rows:
        if title:
            panels.append({"type": "row", "id": next_id, "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            next_id += 1
            y += 1
        x, line_h = 0, 0
        for panel, w, h in items:
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            panel = dict(panel, id=next_id, gridPos={"h": h, "w": w, "x": x, "y": y})
            panels.append(panel)
            next_id += 1
            x += w
            line_h = max(line_h, h)
        y += line_h
    return panels


def variables(instance_multi=True):
    def query(name, label, q):
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "definition": q,
            "query": {"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "multi": instance_multi,
            "includeAll": True,
            "allValue": ".+",
            "current": {},
            "options": [],
            "hide": 0,
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "regex": "",
                "current": {},
                "options": [],
                "refresh": 1,
                "hide": 0,
                "includeAll": False,
                "multi": False,
            },
            query("job", "Job", "label_values(aws_credentials_exporter_build_info, job)"),
            query("instance", "Instance", 'label_values(aws_credentials_exporter_build_info{job=~"$job"}, instance)'),
        ]
    }


def dashboard(uid, title, description, rows, annotations=()):
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *annotations,
            ]
        },
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {"title": "Runbook", "type": "link", "url": RUNBOOK, "icon": "doc", "targetBlank": True, "tooltip": "What each alert means and how to fix it"},
            {"title": "AWS credentials", "type": "dashboards", "tags": ["aws-credentials-exporter"], "asDropdown": True, "includeVars": True, "keepTime": True},
        ],
        "panels": layout(rows),
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": TAGS,
        "templating": variables(),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


UP_DOWN = {0: ("down", RED), 1: ("up", GREEN)}
OK_PROBLEM = {0: ("ok", GREEN), 1: ("problem", RED)}
EXPIRY_THRESHOLDS = thresholds((RED, None), (ORANGE, 300), (GREEN, 900))


def instance_dashboard():
    credentials = [
        (
            stat(
                "Time to expiry",
                "Least time left on any credentials of the instance, measured with the instance's own clock (what its SDKs see). "
                "Orange under 15 minutes: the SDK refresh window; IMDS normally rotates hours ahead. Red under 5 minutes: IMDS "
                "rotates at least 5 minutes before expiry, so rotation has failed. Alerts: AwsCredentialsExpiringSoon, AwsCredentialsExpired.",
                "dtdurations",
                targets((f"min by (instance) (aws_credentials_seconds_until_expiry{{{SEL}}})", "{{instance}}"), instant=True),
                thresholds=EXPIRY_THRESHOLDS,
            ),
            6,
            7,
        ),
        (
            timeseries(
                "Time to expiry history",
                "Time left on each set of credentials. Healthy instance-profile credentials form a sawtooth between about 6 h and "
                "5 h: every jump up is a rotation (also marked by the 'Credential rotation' annotation). A line that keeps falling "
                "means rotation stopped or nothing refreshes the credentials.",
                "dtdurations",
                targets((f"aws_credentials_seconds_until_expiry{{{SEL}}}", "{{instance}} {{provider}} {{role}}{{target}}")),
                thresholds=EXPIRY_THRESHOLDS,
                threshold_style="line",
                soft_min=0,
            ),
            12,
            7,
        ),
        (
            table(
                "Credential document",
                "What IMDS serves for the instance profile: role, Code (anything but Success fires AwsImdsCredentialsError), type "
                "and instance profile ARN. Secrets are never exported.",
                "none",
                f"aws_imds_credentials_info{{{SEL}}}",
                "Value",
                False,
            ),
            6,
            7,
        ),
    ]
    chain = [
        (
            state_timeline(
                "Active credential provider",
                "Which provider of the SDK default chain each inspected target uses (1 = active). The instance profile is consulted "
                "last: an earlier provider shadows it.",
                targets((f"aws_credentials_active_provider{{{SEL}}}", "{{instance}} {{target}}: {{provider}}")),
                {0: ("", "transparent"), 1: ("active", GREEN)},
            ),
            12,
            8,
        ),
        (
            state_timeline(
                "Credential chain hazards",
                "Per target: instance profile shadowed by an earlier provider (AwsCredentialsInstanceProfileShadowed), a static "
                "session token nothing refreshes (AwsCredentialsStaticSessionToken), an HTTP proxy without NO_PROXY for "
                "169.254.169.254 (AwsImdsProxyBypassMissing).",
                targets(
                    (f"aws_credentials_instance_profile_shadowed{{{SEL}}}", "shadowed: {{instance}} {{target}}"),
                    (f"aws_credentials_static_session_token{{{SEL}}}", "static token: {{instance}} {{target}} {{provider}}"),
                    (f"aws_imds_proxy_bypass_missing{{{SEL}}}", "no NO_PROXY: {{instance}} {{target}}"),
                ),
                OK_PROBLEM,
            ),
            12,
            8,
        ),
    ]
    clock = [
        (
            timeseries(
                "Clock offset by NTP server",
                "Local clock minus each NTP server's (positive: this host is ahead). Threshold lines at +/-50 ms "
                "(AwsClockSkewDetected warning); the critical alert fires beyond 60 s, SigV4 rejects requests beyond 5 minutes.",
                "s",
                targets((f"aws_clock_offset_seconds{{{SEL}}}", "{{instance}} {{server}}")),
                thresholds=thresholds((RED, None), (GREEN, -0.05), (RED, 0.05)),
                threshold_style="line",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Clock error bound",
                "How far off the clock may be: per NTP server, offset plus half the round trip, root delay and dispersion "
                "(AwsClockErrorBoundTooLarge fires when the best one exceeds 1 s); and the kernel's own maximum and estimated error.",
                "s",
                targets(
                    (f"aws_clock_error_bound_seconds{{{SEL}}}", "{{instance}} bound via {{server}}"),
                    (f"aws_clock_max_error_seconds{{{SEL}}}", "{{instance}} kernel max error"),
                    (f"aws_clock_estimated_error_seconds{{{SEL}}}", "{{instance}} kernel estimated error"),
                ),
            ),
            12,
            8,
        ),
        (
            stat(
                "Kernel clock synchronised",
                "The AwsClockNotSynchronising guard: 0 when the kernel reports STA_UNSYNC and its maximum error has "
                "reached the 16 s cap, i.e. chronyd or ntpd is not disciplining the clock. STA_UNSYNC alone is no "
                "verdict: chronyd without rtcsync leaves it set on healthy hosts.",
                "none",
                targets(
                    (
                        f"1 - ((aws_clock_max_error_seconds{{{SEL}}} >= bool 16) * (aws_clock_synchronized{{{SEL}}} == bool 0))",
                        "{{instance}}",
                    ),
                    instant=True,
                ),
                mappings=mapping({0: ("not synchronised", RED), 1: ("synchronised", GREEN)}),
            ),
            6,
            5,
        ),
        (
            state_timeline(
                "NTP servers reachable",
                "Whether each NTP server answered the last probe. None answering fires AwsClockNtpUnreachable.",
                targets((f"aws_clock_ntp_up{{{SEL}}}", "{{instance}} {{server}}")),
                UP_DOWN,
            ),
            18,
            5,
        ),
    ]
    imds = [
        (
            stat(
                "IMDS up",
                "1 when the last probe read a credential document with Code=Success. Down for 10 minutes fires AwsImdsDown.",
                "none",
                targets((f"aws_imds_up{{{SEL}}}", "{{instance}}"), instant=True),
                mappings=mapping(UP_DOWN),
            ),
            4,
            5,
        ),
        (
            stat(
                "IMDS protocol",
                "IMDSv2 (session token), IMDSv1 (the token request failed: hop limit or IMDSv2 unavailable, see AwsImdsTokenTimeout "
                "and AwsImdsV1Fallback) or unreachable.",
                "none",
                targets((f"aws_imds_protocol_version{{{SEL}}}", "{{instance}}"), instant=True),
                mappings=mapping({0: ("unreachable", RED), 1: ("IMDSv1 fallback", ORANGE), 2: ("IMDSv2", GREEN)}),
            ),
            4,
            5,
        ),
        (
            stat(
                "Instance profile",
                "Whether IMDS lists an IAM role (AwsImdsNoInstanceProfile fires when none is attached and the chain needs one).",
                "none",
                targets((f"aws_imds_instance_profile_attached{{{SEL}}}", "{{instance}}"), instant=True),
                mappings=mapping({0: ("none attached", RED), 1: ("attached", GREEN)}),
            ),
            4,
            5,
        ),
        (
            stat(
                "Since last good read",
                "Time since the exporter last read Success credentials from IMDS.",
                "dtdurations",
                targets((f"time() - (aws_imds_last_success_timestamp_seconds{{{SEL}}} > 0)", "{{instance}}"), instant=True),
                thresholds=thresholds((GREEN, None), (ORANGE, 60), (RED, 600)),
            ),
            4,
            5,
        ),
        (
            stat(
                "Exporter version",
                "Version and git revision of the exporter on each instance.",
                "none",
                targets((f"aws_credentials_exporter_build_info{{{SEL}}}", "{{instance}}: {{version}} ({{revision}})"), instant=True),
                color_mode="none",
                text_mode="name",
            ),
            8,
            5,
        ),
        (
            timeseries(
                "IMDS requests by endpoint and outcome",
                "IMDS request attempts per second by endpoint and outcome (HTTP status, timeout, connect_error). At steady state "
                "one credentials GET per probe; 429 means throttled, a token timeout means the PUT hop limit.",
                "reqps",
                targets(
                    (
                        f"sum by (instance, endpoint, code) (rate(aws_imds_requests_total{{{SEL}}}[$__rate_interval]))",
                        "{{instance}} {{endpoint}} {{code}}",
                    )
                ),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "IMDS throttles and retries",
                "HTTP 429 answers and retried attempts per second. A sustained share of 429s above 5% fires AwsImdsThrottled: "
                "something on the instance calls IMDS too often.",
                "reqps",
                targets(
                    (f"rate(aws_imds_throttled_total{{{SEL}}}[$__rate_interval])", "{{instance}} throttled (429)"),
                    (f"rate(aws_imds_retries_total{{{SEL}}}[$__rate_interval])", "{{instance}} retries"),
                ),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "IMDS latency",
                "Median and 99th percentile latency of IMDS request attempts by endpoint.",
                "s",
                targets(
                    (
                        f"histogram_quantile(0.5, sum by (instance, endpoint, le) (rate(aws_imds_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        "{{instance}} {{endpoint}} p50",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (instance, endpoint, le) (rate(aws_imds_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        "{{instance}} {{endpoint}} p99",
                    ),
                ),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Probe duration",
                "How long the last completed run of each probe took; a probe stops at its own budget, not at the scrape timeout.",
                "s",
                targets((f"aws_credentials_exporter_probe_duration_seconds{{{SEL}}}", "{{instance}} {{probe}}")),
            ),
            12,
            8,
        ),
    ]
    rotation = {
        "datasource": DS,
        "enable": True,
        "expr": f"changes(aws_credentials_expiration_timestamp_seconds{{{SEL}}}[2m]) > 0",
        "iconColor": "green",
        "name": "Credential rotation",
        "step": "1m",
        "tagKeys": "instance,provider,role,target",
        "titleFormat": "Credentials rotated",
    }
    return dashboard(
        "aws-credentials-instance",
        "AWS credentials / Instance",
        "Credential expiry, credential chain, clock and IMDS health of selected instances (aws-credentials-exporter).",
        [("Credentials", credentials), ("Credential chain", chain), ("Clock", clock), ("IMDS", imds)],
        annotations=[rotation],
    )


def fleet_dashboard():
    overview = [
        (
            stat(
                "Instances reporting",
                "Instances whose exporter is scraped and reports build info.",
                "none",
                targets((f"count(aws_credentials_exporter_build_info{{{SEL}}})", ""), instant=True),
                color_mode="none",
            ),
            4,
            4,
        ),
        (
            stat(
                "Exporter coverage",
                "Share of targets of the selected jobs that are up. With ec2_sd_configs every running instance is a target, so a "
                "target that is down is an instance without a working exporter (AwsCredentialsExporterDown).",
                "percentunit",
                targets(('sum(up{job=~"$job"}) / count(up{job=~"$job"})', ""), instant=True),
                thresholds=thresholds((RED, None), (ORANGE, 0.9), (GREEN, 0.99)),
            ),
            4,
            4,
        ),
        (
            stat(
                "Credentials under 15 minutes",
                "Instances whose least time to expiry is under 15 minutes (AwsCredentialsExpiringSoon).",
                "none",
                targets((f"sum(instance:aws_credentials_seconds_until_expiry:min{{{SEL}}} < bool 900)", ""), instant=True),
                thresholds=thresholds((GREEN, None), (RED, 1)),
            ),
            4,
            4,
        ),
        (
            stat(
                "Instance profile shadowed",
                "Instances where at least one target's credentials come from a provider that shadows the instance profile "
                "(AwsCredentialsInstanceProfileShadowed).",
                "none",
                targets((f"sum(instance:aws_credentials_instance_profile_shadowed:max{{{SEL}}})", ""), instant=True),
                thresholds=thresholds((GREEN, None), (ORANGE, 1)),
            ),
            4,
            4,
        ),
        (
            stat(
                "IMDS down",
                "Instances whose last IMDS probe did not read Success credentials.",
                "none",
                targets((f"sum(aws_imds_up{{{SEL}}} == bool 0)", ""), instant=True),
                thresholds=thresholds((GREEN, None), (RED, 1)),
            ),
            4,
            4,
        ),
        (
            stat(
                "Clock not synchronised",
                "Instances whose kernel reports the clock unsynchronised with its maximum error at the 16 s cap "
                "(the AwsClockNotSynchronising guard; STA_UNSYNC alone stays set under chronyd without rtcsync).",
                "none",
                targets(
                    (f"sum((aws_clock_max_error_seconds{{{SEL}}} >= bool 16) * (aws_clock_synchronized{{{SEL}}} == bool 0))", ""),
                    instant=True,
                ),
                thresholds=thresholds((GREEN, None), (RED, 1)),
            ),
            4,
            4,
        ),
    ]
    worst = [
        (
            table(
                "Least time to expiry",
                "The 20 instances with the least time left on any of their credentials, least first.",
                "dtdurations",
                f"bottomk(20, instance:aws_credentials_seconds_until_expiry:min{{{SEL}}})",
                "Time to expiry",
                False,
                thresholds=EXPIRY_THRESHOLDS,
            ),
            8,
            10,
        ),
        (
            table(
                "Largest clock offset",
                "The 20 instances with the largest absolute offset against a reachable NTP server, largest first.",
                "s",
                f"topk(20, instance:aws_clock_offset_seconds:max_abs{{{SEL}}})",
                "Offset",
                True,
                thresholds=thresholds((GREEN, None), (ORANGE, 0.05), (RED, 60)),
            ),
            8,
            10,
        ),
        (
            table(
                "Throttle hot spots",
                "The 20 instances where IMDS answers the largest share of requests with HTTP 429 (over 5 minutes).",
                "percentunit",
                f"topk(20, instance:aws_imds_throttled:ratio_rate5m{{{SEL}}})",
                "Throttled",
                True,
                thresholds=thresholds((GREEN, None), (ORANGE, 0.01), (RED, 0.05)),
            ),
            8,
            10,
        ),
    ]
    trends = [
        (
            timeseries(
                "Credential providers in use",
                "How many inspected targets use each provider of the SDK default chain, fleet-wide.",
                "none",
                targets((f"sum by (provider) (aws_credentials_active_provider{{{SEL}}})", "{{provider}}")),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "IMDS throttle ratio",
                "Share of IMDS requests answered with HTTP 429 per instance (recorded over 5 minutes); AwsImdsThrottled fires above 5%.",
                "percentunit",
                targets((f"instance:aws_imds_throttled:ratio_rate5m{{{SEL}}}", "{{instance}}")),
            ),
            12,
            8,
        ),
        (
            table(
                "Targets without a working exporter",
                "Every target of the selected jobs, down (no exporter answering) first.",
                "none",
                'up{job=~"$job"}',
                "Up",
                False,
                mappings=mapping({0: ("down: no exporter", RED), 1: ("up", GREEN)}),
            ),
            12,
            8,
        ),
        (
            table(
                "Exporter versions",
                "Instances by exporter version and revision.",
                "none",
                f"count by (version, revision) (aws_credentials_exporter_build_info{{{SEL}}})",
                "Instances",
                True,
            ),
            12,
            8,
        ),
    ]
    return dashboard(
        "aws-credentials-fleet",
        "AWS credentials / Fleet",
        "Which instances need attention first: least time to expiry, largest clock offset, IMDS throttling, shadowed "
        "instance profiles and exporter coverage (aws-credentials-exporter).",
        [("Overview", overview), ("Worst first", worst), ("Trends and coverage", trends)],
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "dashboards"), help="output directory")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, build in [("aws-credentials-instance.json", instance_dashboard), ("aws-credentials-fleet.json", fleet_dashboard)]:
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(build(), f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
