//! The audit log page (installer): who changed what, when (in the site's time zone), from
//! where, with the detail (site diffs over several lines), newest first, for the last 7 days,
//! 30 days or 6 months and by action prefix (`site.`, `account`, `token.`…); and the same
//! records as CSV (`GET /audit.csv`, same filters) for the records' owners.

use std::collections::{BTreeSet, HashMap};

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth::{Caller, Role};
use super::settings::{page, refused};
use super::{PageCtx, RequestInfo, esc, local_time, need, page_lang, with_ctx};
use crate::i18n::{Lang, catalog};
use crate::store::AuditRecord;

/// At most this many records on the page (the CSV has them all).
const PAGE_LIMIT: usize = 1000;
/// At most this many records read for one answer.
const READ_LIMIT: usize = 200_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

catalog! {
    AuditMsgs;
    Title => "Audit log", "审计日志";
    Period => "Period", "时间范围";
    Last7 => "Last 7 days", "最近 7 天";
    Last30 => "Last 30 days", "最近 30 天";
    Last6Months => "Last 6 months", "最近 6 个月";
    Action => "Action starts with", "操作前缀";
    Show => "Show", "显示";
    ExportCsv => "Export CSV", "导出 CSV";
    When => "When", "时间";
    Who => "Who", "用户";
    From => "From", "来源";
    ActionCol => "Action", "操作";
    Target => "Target", "对象";
    Detail => "Detail", "详情";
    Nothing => "Nothing was recorded in this period.", "此时间范围内没有记录。";
    Truncated => "Showing the newest {n}; the CSV export has them all.", "仅显示最新的 {n} 条；导出的 CSV 包含全部记录。";
    Count => "{n} record(s), times in {zone}.", "共 {n} 条记录，时间为 {zone} 时区。";
}

/// How far back the log is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    #[default]
    Week,
    Month,
    HalfYear,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Week, Period::Month, Period::HalfYear];

    /// The query value: `7d`, `30d`, `6m`; anything else is the default week.
    pub fn parse(s: Option<&str>) -> Period {
        match s.map(str::trim) {
            Some("30d") => Period::Month,
            Some("6m") => Period::HalfYear,
            _ => Period::Week,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Period::Week => "7d",
            Period::Month => "30d",
            Period::HalfYear => "6m",
        }
    }

    fn text(self) -> AuditMsgs {
        match self {
            Period::Week => AuditMsgs::Last7,
            Period::Month => AuditMsgs::Last30,
            Period::HalfYear => AuditMsgs::Last6Months,
        }
    }

    /// The oldest time shown at `now_ms` (six months are 183 days).
    pub fn since_ms(self, now_ms: i64) -> i64 {
        let days = match self {
            Period::Week => 7,
            Period::Month => 30,
            Period::HalfYear => 183,
        };
        now_ms.saturating_sub(days * DAY_MS)
    }
}

/// The records whose action starts with `prefix` (all for an empty one), order kept.
pub fn filter_action(records: Vec<AuditRecord>, prefix: &str) -> Vec<AuditRecord> {
    let prefix = prefix.trim();
    records
        .into_iter()
        .filter(|r| r.action.starts_with(prefix))
        .collect()
}

/// The actions' first words (`site`, `account`…), for the filter's suggestions.
fn action_prefixes(records: &[AuditRecord]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r.action.split('.').next().unwrap_or("").to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The records as CSV: a header, then one row per record with its time as `local` gives it
/// and in UTC (RFC 3339), who, from, action, target and detail (line breaks kept, quoted).
pub fn audit_csv(
    records: &[AuditRecord],
    local: impl Fn(i64) -> String,
) -> Result<String, csv::Error> {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record([
        "time", "time_utc", "who", "from", "action", "target", "detail",
    ])?;
    for r in records {
        let utc = jiff::Timestamp::from_millisecond(r.at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        out.write_record([
            local(r.at_ms).as_str(),
            &utc,
            &r.who,
            &r.from,
            &r.action,
            &r.target,
            &r.detail,
        ])?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read(ctx: &PageCtx, period: Period, action: &str) -> Result<Vec<AuditRecord>, String> {
    let since = period.since_ms(ctx.console.now_ms());
    let records = ctx
        .console
        .accounts
        .audit_log(since, READ_LIMIT)
        .map_err(|e| e.to_string())?;
    Ok(filter_action(records, action))
}

fn audit_page(
    ctx: &PageCtx,
    caller: &Caller,
    lang: Lang,
    chosen: bool,
    q: &HashMap<String, String>,
) -> Response {
    let t = |m| lang.t(m);
    let period = Period::parse(q.get("period").map(String::as_str));
    let action = q
        .get("action")
        .map(|a| a.trim().to_owned())
        .unwrap_or_default();
    let all = match read(ctx, period, "") {
        Ok(r) => r,
        Err(e) => return refused("", &e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let prefixes = action_prefixes(&all);
    let records = filter_action(all, &action);
    let periods: String = Period::ALL
        .iter()
        .map(|p| {
            let sel = if *p == period { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{sel}>{}</option>",
                p.key(),
                esc(t(p.text()))
            )
        })
        .collect();
    let suggestions: String = prefixes
        .iter()
        .map(|p| format!("<option value=\"{}\">", esc(p)))
        .collect();
    let query = format!(
        "period={}&action={}",
        period.key(),
        super::encode_component(&action)
    );
    let mut body = format!(
        "<form method=\"get\" action=\"/audit\" data-plain class=\"row\" id=\"audit-filter\">\
         <label>{period_label}<select name=\"period\">{periods}</select></label>\
         <label>{action_label}<input name=\"action\" list=\"audit-actions\" value=\"{action}\"></label>\
         <datalist id=\"audit-actions\">{suggestions}</datalist>\
         <div><button type=\"submit\">{show}</button> \
         <a href=\"/audit.csv?{query}\" id=\"audit-csv\">{export}</a></div></form>",
        period_label = esc(t(AuditMsgs::Period)),
        action_label = esc(t(AuditMsgs::Action)),
        action = esc(&action),
        show = esc(t(AuditMsgs::Show)),
        query = esc(&query),
        export = esc(t(AuditMsgs::ExportCsv)),
    );
    if records.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(t(AuditMsgs::Nothing))
        ));
    } else {
        let zone = ctx.gateway.time.tz.iana_name().unwrap_or("UTC").to_owned();
        body.push_str(&format!(
            "<p class=\"hint\">{}",
            esc(&lang.f(
                AuditMsgs::Count,
                &[("n", &records.len().to_string()), ("zone", &zone)]
            ))
        ));
        if records.len() > PAGE_LIMIT {
            body.push(' ');
            body.push_str(&esc(
                &lang.f(AuditMsgs::Truncated, &[("n", &PAGE_LIMIT.to_string())])
            ));
        }
        body.push_str("</p>");
        body.push_str(&format!(
            "<table id=\"audit\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t(AuditMsgs::When)),
            esc(t(AuditMsgs::Who)),
            esc(t(AuditMsgs::From)),
            esc(t(AuditMsgs::ActionCol)),
            esc(t(AuditMsgs::Target)),
            esc(t(AuditMsgs::Detail)),
        ));
        for r in records.iter().take(PAGE_LIMIT) {
            body.push_str(&format!(
                "<tr data-action=\"{action}\"><td style=\"white-space:nowrap\">{when}</td><td>{who}</td>\
                 <td>{from}</td><td><code>{action}</code></td><td>{target}</td>\
                 <td style=\"white-space:pre-wrap\">{detail}</td></tr>",
                when = esc(&local_time(&ctx.gateway, r.at_ms)),
                who = esc(&r.who),
                from = esc(&r.from),
                action = esc(&r.action),
                target = esc(&r.target),
                detail = esc(&r.detail),
            ));
        }
        body.push_str("</table>");
    }
    page(lang, chosen, t(AuditMsgs::Title), caller, &body)
}

fn audit_export(ctx: &PageCtx, q: &HashMap<String, String>) -> Response {
    let period = Period::parse(q.get("period").map(String::as_str));
    let action = q.get("action").map(String::as_str).unwrap_or("");
    let records = match read(ctx, period, action) {
        Ok(r) => r,
        Err(e) => return refused("", &e, StatusCode::INTERNAL_SERVER_ERROR),
    };
    match audit_csv(&records, |ms| local_time(&ctx.gateway, ms)) {
        Ok(text) => {
            let r = warp::reply::with_header(text, "content-type", "text/csv; charset=utf-8");
            warp::reply::with_header(
                r,
                "content-disposition",
                format!("attachment; filename=\"audit-{}.csv\"", period.key()),
            )
            .into_response()
        }
        Err(e) => refused("", &e.to_string(), StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `GET /audit` and `GET /audit.csv` (installer), both with `?period=7d|30d|6m&action=`.
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let show = warp::path!("audit")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_ctx(ctx))
        .map(
            |caller: Caller,
             _: RequestInfo,
             lang: Lang,
             chosen: bool,
             q: HashMap<String, String>,
             ctx: PageCtx| audit_page(&ctx, &caller, lang, chosen, &q),
        )
        .boxed();
    let export = warp::path!("audit.csv")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_ctx(ctx))
        .map(
            |_: Caller, _: RequestInfo, q: HashMap<String, String>, ctx: PageCtx| {
                audit_export(&ctx, &q)
            },
        )
        .boxed();
    show.or(export).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: i64, action: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            at_ms,
            who: "ada".into(),
            from: "10.0.0.9".into(),
            action: action.into(),
            target: "site file".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn periods_parse_and_reach_back() {
        assert_eq!(Period::parse(Some("30d")), Period::Month);
        assert_eq!(Period::parse(Some("6m")), Period::HalfYear);
        assert_eq!(Period::parse(Some("7d")), Period::Week);
        assert_eq!(Period::parse(Some("forever")), Period::Week);
        assert_eq!(Period::parse(None), Period::Week);
        let now = 400 * DAY_MS;
        assert_eq!(Period::Week.since_ms(now), 393 * DAY_MS);
        assert_eq!(Period::HalfYear.since_ms(now), 217 * DAY_MS);
        for p in Period::ALL {
            assert_eq!(Period::parse(Some(p.key())), p);
        }
    }

    #[test]
    fn actions_filter_by_prefix_keeping_the_order() {
        let all = vec![
            rec(3, "site.change", ""),
            rec(2, "account.add", ""),
            rec(1, "site.settings", ""),
        ];
        let site = filter_action(all.clone(), "site.");
        assert_eq!(site.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(filter_action(all.clone(), "").len(), 3);
        assert_eq!(filter_action(all.clone(), "token").len(), 0);
        let prefixes: Vec<String> = action_prefixes(&all).into_iter().collect();
        assert_eq!(prefixes, ["account", "site"]);
    }

    #[test]
    fn the_csv_keeps_multi_line_details_in_one_quoted_cell() {
        let records = [rec(
            1_772_409_600_000,
            "site.change",
            "device a: port 502 → 1502\nroom r1 added, \"quoted\"",
        )];
        let text = audit_csv(&records, |_| "2026-03-02 08:00:00".into()).expect("csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "2026-03-02 08:00:00");
        assert_eq!(&rows[0][1], "2026-03-02T00:00:00Z");
        assert_eq!(&rows[0][2], "ada");
        assert_eq!(&rows[0][4], "site.change");
        assert_eq!(
            &rows[0][6],
            "device a: port 502 → 1502\nroom r1 added, \"quoted\""
        );
        assert!(text.starts_with("time,time_utc,who,from,action,target,detail\r\n"));
    }
}
