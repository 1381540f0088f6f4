//! The site-file page (installer): the running site as TOML to download; a whole site file
//! (pasted, edited or read from a file) checked first, which shows its diff against the
//! running site and the reload plan, or every error with its line and column, and applied
//! second (`SiteSource::change`: live reload, the file written with `.prev` kept, audited with
//! the diff); and a device's point list as CSV (`site::csv`), exported, and imported the same
//! way: every bad row with its line, nothing applied while any row is bad.
//!
//! The check and the apply are two posts of the same form (`settings.js` offers "apply" only
//! after a check of the same text passed); the apply validates again, so a post straight to
//! it is as safe as the file API.

use std::collections::HashMap;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth::{Caller, Role};
use super::settings::{SCRIPT_TAG, current_doc, err_slot, file_into, page, refused, textarea};
use super::{PageCtx, RequestInfo, esc, form_errors, need, page_lang, parse_form, with_ctx};
use crate::i18n::{Lang, catalog};
use crate::reload::{SiteAnswer, SiteRefusal};
use crate::runtime::ApiError;
use crate::site::{CsvError, DeviceKind, PointsCsvError, SiteErrors, export_points, import_points};

/// A whole site file may be this large (as `POST /api/site`).
const MAX_SITE_FORM: u64 = 1024 * 1024;

catalog! {
    SiteMsgs;
    Title => "Site file", "站点文件";
    Download => "Download the running site (TOML)", "下载当前站点文件（TOML）";
    WholeFile => "The whole site file", "完整站点文件";
    WholeHint => "Edit the running site below, paste another or read one from a file. Check shows what would change; nothing changes before you apply.", "可在下方编辑当前站点、粘贴其他站点文件或从文件读取。“检查”会显示将要发生的更改；点击“应用”之前不会有任何更改。";
    SiteText => "Site file (TOML)", "站点文件（TOML）";
    ChooseFile => "or read it from a file", "或从文件读取";
    Check => "Check", "检查";
    Apply => "Apply", "应用";
    Changes => "Changes", "更改";
    Reload => "What reloads", "将重新加载的部分";
    AtRestart => "At the next restart", "下次重启时生效";
    Checked => "The file is valid. Nothing is applied yet.", "文件有效，尚未应用任何更改。";
    Applied => "Applied.", "已应用。";
    NeedsRestart => "Applying will be refused: this change needs the gateway restarted. Change the file on the gateway and restart it.", "应用将被拒绝：此更改需要重启网关。请在网关上修改文件并重启。";
    KeptBookings => "{n} booking(s) of removed rooms are kept in the store, not run.", "已删除会议室的 {n} 个预订保留在存储中，不再执行。";
    ErrorsInFile => "{n} error(s) in the site file; nothing was applied.", "站点文件中有 {n} 处错误，未应用任何更改。";
    BadRows => "{n} bad row(s); nothing was applied.", "有 {n} 行有误，未应用任何更改。";
    SiteAfterImport => "The site with these points is not valid; nothing was applied.", "使用这些点位后站点无效，未应用任何更改。";
    LineCol => "line {line}, column {column}", "第 {line} 行第 {column} 列";
    Line => "line {line}", "第 {line} 行";
    NotUtf8 => "The file must be UTF-8 text.", "文件必须是 UTF-8 文本。";
    Empty => "The site file is empty.", "站点文件为空。";
    NoSiteFile => "This gateway runs a site given in memory: there is no site file here.", "此网关运行的是内存中的站点配置，此处没有站点文件。";
    CsvSection => "Point lists as CSV", "CSV 点位表";
    CsvHint => "Columns are the site file's point keys. An import replaces the device's whole point list: every row is checked, and nothing is applied while any row is bad.", "列名为站点文件中的点位键。导入将替换该设备的全部点位：逐行检查，只要有一行有误就不会应用。";
    Device => "Device", "设备";
    Export => "Export CSV", "导出 CSV";
    ImportTitle => "Import a point list", "导入点位表";
    CsvText => "CSV", "CSV";
    NoDevices => "No device has a point list (serial devices take theirs from their profile).", "没有带点位表的设备（串口设备的点位来自其配置模板）。";
    ChooseDevice => "Choose a device.", "请选择设备。";
}

/// A site file's errors as lines: `line L, column C: path: message`.
pub fn site_error_lines(lang: Lang, errors: &SiteErrors) -> Vec<String> {
    errors
        .0
        .iter()
        .map(|e| {
            let mut out = String::new();
            if let Some((line, column)) = e.line_col {
                out.push_str(&lang.f(
                    SiteMsgs::LineCol,
                    &[("line", &line.to_string()), ("column", &column.to_string())],
                ));
                out.push_str(": ");
            }
            if !e.path.is_empty() {
                out.push_str(&e.path);
                out.push_str(": ");
            }
            out.push_str(&e.message);
            out
        })
        .collect()
}

/// A CSV point list's errors as lines: `line N: message` (with the column where one cell is
/// at fault).
pub fn csv_error_lines(lang: Lang, errors: &[CsvError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            let at = match &e.column {
                Some(c) => lang.f(
                    SiteMsgs::LineCol,
                    &[("line", &e.line.to_string()), ("column", c)],
                ),
                None => lang.f(SiteMsgs::Line, &[("line", &e.line.to_string())]),
            };
            format!("{at}: {}", e.message)
        })
        .collect()
}

/// Whether a plan says the change needs a restart (a dry run plans it; applying refuses it).
fn needs_restart(answer: &SiteAnswer) -> bool {
    (answer.report.plan.iter()).any(|l| l.starts_with("full restart"))
}

/// The answer to a check (`dry_run`) or an apply: the diff, the plan, what waits for a
/// restart, and a summary message.
fn answer(lang: Lang, a: &SiteAnswer) -> Response {
    let mut message = if a.dry_run {
        lang.t(SiteMsgs::Checked).to_owned()
    } else {
        lang.t(SiteMsgs::Applied).to_owned()
    };
    if !a.report.kept_bookings.is_empty() {
        message.push(' ');
        message.push_str(&lang.f(
            SiteMsgs::KeptBookings,
            &[("n", &a.report.kept_bookings.len().to_string())],
        ));
    }
    let blocked = a.dry_run && needs_restart(a);
    let mut body = serde_json::json!({
        "message": message,
        "dry_run": a.dry_run,
        "diff": a.diff,
        "plan": a.report.plan,
        "pending_restart": a.report.pending_restart,
        "file": a.file,
        "blocked": blocked,
    });
    if blocked {
        body["warning"] = serde_json::Value::String(lang.t(SiteMsgs::NeedsRestart).to_owned());
    }
    warp::reply::json(&body).into_response()
}

/// Errors on `field`, one entry per line (each shown in the form), with a summary.
fn errors_on(field: &str, lines: &[String], summary: &str) -> Response {
    let fields: Vec<(String, String)> = lines
        .iter()
        .map(|l| (field.to_owned(), l.clone()))
        .collect();
    form_errors(&fields, Some(summary))
}

fn site_refusal(lang: Lang, e: &SiteRefusal) -> Response {
    match e {
        SiteRefusal::Invalid(errors) => errors_on(
            "text",
            &site_error_lines(lang, errors),
            &lang.f(
                SiteMsgs::ErrorsInFile,
                &[("n", &errors.0.len().to_string())],
            ),
        ),
        SiteRefusal::Gateway(ApiError::Refused(why)) => refused("", why, StatusCode::CONFLICT),
        SiteRefusal::Gateway(e) => refused("", &e.to_string(), StatusCode::SERVICE_UNAVAILABLE),
        SiteRefusal::NoDocument => refused("", lang.t(SiteMsgs::NoSiteFile), StatusCode::NOT_FOUND),
    }
}

fn csv_refusal(lang: Lang, e: &PointsCsvError) -> Response {
    match e {
        PointsCsvError::BadRows(rows) => errors_on(
            "csv",
            &csv_error_lines(lang, rows),
            &lang.f(SiteMsgs::BadRows, &[("n", &rows.len().to_string())]),
        ),
        PointsCsvError::UnknownDevice(_) | PointsCsvError::NoPointList(_) => {
            refused("device", &e.to_string(), StatusCode::UNPROCESSABLE_ENTITY)
        }
        PointsCsvError::Site(errors) => {
            let lines: Vec<String> = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect();
            errors_on("csv", &lines, lang.t(SiteMsgs::SiteAfterImport))
        }
        PointsCsvError::Export(_) | PointsCsvError::Write(_) => {
            refused("", &e.to_string(), StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// The devices that have a point list, as (id, "id: name").
fn point_devices(doc: &crate::site::SiteDocument) -> Vec<(String, String)> {
    (doc.site().devices.iter())
        .filter(|d| !matches!(d.kind, DeviceKind::Serial(_)))
        .map(|d| {
            let text = if d.name.is_empty() || d.name == d.id {
                d.id.clone()
            } else {
                format!("{}: {}", d.id, d.name)
            };
            (d.id.clone(), text)
        })
        .collect()
}

fn device_select(lang: Lang, devices: &[(String, String)], chosen: &str) -> String {
    let options: String = devices
        .iter()
        .map(|(id, text)| {
            let sel = if id == chosen { " selected" } else { "" };
            format!("<option value=\"{}\"{sel}>{}</option>", esc(id), esc(text))
        })
        .collect();
    format!(
        "<label>{}<select name=\"device\">{options}</select></label>{}",
        esc(lang.t(SiteMsgs::Device)),
        err_slot("device")
    )
}

/// A form's check and apply buttons and where their answers go.
fn two_step_buttons(lang: Lang, check: &str, apply: &str) -> String {
    format!(
        "<div data-out style=\"white-space:pre-wrap\"></div>\
         <button type=\"button\" class=\"secondary\" data-step=\"check\" data-url=\"{check}\">{c}</button> \
         <button type=\"button\" data-step=\"apply\" data-url=\"{apply}\" disabled>{a}</button>",
        c = esc(lang.t(SiteMsgs::Check)),
        a = esc(lang.t(SiteMsgs::Apply)),
    )
}

fn two_step_titles(lang: Lang) -> String {
    format!(
        "data-twostep data-diff-title=\"{}\" data-plan-title=\"{}\" data-restart-title=\"{}\"",
        esc(lang.t(SiteMsgs::Changes)),
        esc(lang.t(SiteMsgs::Reload)),
        esc(lang.t(SiteMsgs::AtRestart)),
    )
}

async fn site_page(ctx: PageCtx, caller: Caller, lang: Lang, chosen: bool) -> Response {
    let t = |m| lang.t(m);
    let (text, devices, missing) = match ctx.site.current_toml().await {
        Ok(text) => {
            let devices = crate::site::SiteDocument::load(&text)
                .map(|d| point_devices(&d))
                .unwrap_or_default();
            (text, devices, None)
        }
        Err(SiteRefusal::NoDocument) => (
            String::new(),
            Vec::new(),
            Some(t(SiteMsgs::NoSiteFile).to_owned()),
        ),
        Err(e) => (String::new(), Vec::new(), Some(e.to_string())),
    };
    let mut body = String::new();
    if let Some(why) = missing {
        body.push_str(&format!("<p class=\"muted\">{}</p>", esc(&why)));
    } else {
        body.push_str(&format!(
            "<p><a href=\"/api/site\" download=\"site.toml\" id=\"site-download\">{}</a></p>",
            esc(t(SiteMsgs::Download))
        ));
    }
    body.push_str(&format!(
        "<h2>{title}</h2><p class=\"hint\">{hint}</p>\
         <form method=\"post\" action=\"/site/check\" id=\"site-form\" {titles}>\
         {area}{file}{buttons}</form>",
        title = esc(t(SiteMsgs::WholeFile)),
        hint = esc(t(SiteMsgs::WholeHint)),
        titles = two_step_titles(lang),
        area = textarea("text", "site-text", t(SiteMsgs::SiteText), &text, 24),
        file = file_into(t(SiteMsgs::ChooseFile), "site-text", ".toml,text/plain"),
        buttons = two_step_buttons(lang, "/site/check", "/site/apply"),
    ));
    body.push_str(&format!(
        "<h2>{}</h2><p class=\"hint\">{}</p>",
        esc(t(SiteMsgs::CsvSection)),
        esc(t(SiteMsgs::CsvHint))
    ));
    if devices.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(t(SiteMsgs::NoDevices))
        ));
    } else {
        let first = devices.first().map(|(id, _)| id.as_str()).unwrap_or("");
        body.push_str(&format!(
            "<form method=\"get\" action=\"/site/points.csv\" data-plain class=\"row\" id=\"csv-export\">\
             <div>{select}</div><div><button type=\"submit\" class=\"secondary\">{export}</button></div></form>\
             <form method=\"post\" action=\"/site/points/check\" id=\"csv-form\" {titles}>\
             <h3>{import}</h3>{select}{area}{file}{buttons}</form>",
            select = device_select(lang, &devices, first),
            export = esc(t(SiteMsgs::Export)),
            titles = two_step_titles(lang),
            import = esc(t(SiteMsgs::ImportTitle)),
            area = textarea("csv", "csv-text", t(SiteMsgs::CsvText), "", 12),
            file = file_into(t(SiteMsgs::ChooseFile), "csv-text", ".csv,text/csv,text/plain"),
            buttons = two_step_buttons(lang, "/site/points/check", "/site/points/apply"),
        ));
    }
    body.push_str(SCRIPT_TAG);
    page(lang, chosen, t(SiteMsgs::Title), &caller, &body)
}

async fn change_site(
    ctx: PageCtx,
    caller: Caller,
    req: RequestInfo,
    lang: Lang,
    f: HashMap<String, String>,
    dry_run: bool,
) -> Response {
    let text = f.get("text").map(String::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return refused(
            "text",
            lang.t(SiteMsgs::Empty),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match ctx.site.change(&ctx.gateway, text, dry_run).await {
        Ok(a) => {
            if !dry_run {
                ctx.console.audit(
                    &caller,
                    &req.from(),
                    "site.change",
                    "site file",
                    &a.diff.join("\n"),
                );
            }
            answer(lang, &a)
        }
        Err(e) => site_refusal(lang, &e),
    }
}

async fn import_csv(
    ctx: PageCtx,
    caller: Caller,
    req: RequestInfo,
    lang: Lang,
    f: HashMap<String, String>,
    dry_run: bool,
) -> Response {
    let device = f
        .get("device")
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    if device.is_empty() {
        return refused(
            "device",
            lang.t(SiteMsgs::ChooseDevice),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let text = f.get("csv").cloned().unwrap_or_default();
    let done = ctx
        .site
        .edit(&ctx.gateway, dry_run, |doc| {
            import_points(doc, &device, &text)?.apply(doc)
        })
        .await;
    match done {
        Err(e) => csv_refusal(lang, &e),
        Ok(Err(e)) => site_refusal(lang, &e),
        Ok(Ok(a)) => {
            if !dry_run {
                ctx.console.audit(
                    &caller,
                    &req.from(),
                    "points.import",
                    &device,
                    &a.diff.join("\n"),
                );
            }
            answer(lang, &a)
        }
    }
}

async fn export_csv(ctx: PageCtx, device: String) -> Response {
    let doc = match current_doc(&ctx).await {
        Ok(d) => d,
        Err(e) => return refused("", &e.to_string(), StatusCode::NOT_FOUND),
    };
    match export_points(&doc, &device) {
        Ok(csv) => {
            let name: String = device
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let r = warp::reply::with_header(csv, "content-type", "text/csv; charset=utf-8");
            warp::reply::with_header(
                r,
                "content-disposition",
                format!("attachment; filename=\"points-{name}.csv\""),
            )
            .into_response()
        }
        Err(e @ (PointsCsvError::UnknownDevice(_) | PointsCsvError::NoPointList(_))) => {
            refused("device", &e.to_string(), StatusCode::NOT_FOUND)
        }
        Err(e) => refused("", &e.to_string(), StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A form body as large as a site file may be.
fn big_form() -> impl Filter<Extract = (HashMap<String, String>,), Error = warp::Rejection> + Clone
{
    warp::body::content_length_limit(MAX_SITE_FORM)
        .and(warp::body::bytes())
        .map(|b: warp::hyper::body::Bytes| parse_form(&b))
}

/// `GET /site`, `POST /site/check|apply`, `GET /site/points.csv?device=`,
/// `POST /site/points/check|apply` (installer).
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let show = warp::path!("site")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller, _: RequestInfo, lang: Lang, chosen: bool, ctx: PageCtx| {
                site_page(ctx, caller, lang, chosen)
            },
        )
        .boxed();
    let check = warp::path!("site" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(big_form())
        .and(with_ctx(ctx))
        .and_then(
            |step: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let dry_run = match step.as_str() {
                    "check" => true,
                    "apply" => false,
                    _ => return Err(warp::reject::not_found()),
                };
                Ok(change_site(ctx, caller, req, lang, f, dry_run).await)
            },
        )
        .boxed();
    let export = warp::path!("site" / "points.csv")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_ctx(ctx))
        .then(
            |_: Caller, _: RequestInfo, q: HashMap<String, String>, ctx: PageCtx| {
                export_csv(ctx, q.get("device").cloned().unwrap_or_default())
            },
        )
        .boxed();
    let import = warp::path!("site" / "points" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(big_form())
        .and(with_ctx(ctx))
        .and_then(
            |step: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let dry_run = match step.as_str() {
                    "check" => true,
                    "apply" => false,
                    _ => return Err(warp::reject::not_found()),
                };
                Ok(import_csv(ctx, caller, req, lang, f, dry_run).await)
            },
        )
        .boxed();
    show.or(check)
        .unify()
        .boxed()
        .or(export)
        .unify()
        .boxed()
        .or(import)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_page_text_has_both_languages() {
        for m in SiteMsgs::ALL {
            let (en, zh) = crate::i18n::Texts::texts(*m);
            assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
            for part in en.split('{').skip(1) {
                let name = part.split('}').next().unwrap_or("");
                assert!(zh.contains(&format!("{{{name}}}")), "{m:?}: {{{name}}}");
            }
        }
    }

    #[test]
    fn site_errors_read_with_their_line_and_column() {
        let errors = crate::site::SiteDocument::load(
            "[site]\nname = \"x\"\ntimezone = \"UTC\"\n\n[[rooms]]\nid = \"r1\"\nname = \"R\"\nkind = \"sometimes\"\n",
        )
        .expect_err("a bad room kind");
        let lines = site_error_lines(Lang::En, &errors);
        assert!(!lines.is_empty());
        assert!(lines[0].starts_with("line 8, column "), "{lines:?}");
        assert!(lines[0].contains("sometimes"), "{lines:?}");
        let zh = site_error_lines(Lang::ZhCn, &errors);
        assert!(zh[0].starts_with("第 8 行第 "), "{zh:?}");
    }

    #[test]
    fn csv_errors_read_line_first() {
        let errors = [
            CsvError {
                line: 3,
                column: Some("address".into()),
                message: "'x' is not a whole number".into(),
            },
            CsvError {
                line: 5,
                column: None,
                message: "4 fields, but the header has 3 columns".into(),
            },
        ];
        assert_eq!(
            csv_error_lines(Lang::En, &errors),
            [
                "line 3, column address: 'x' is not a whole number",
                "line 5: 4 fields, but the header has 3 columns",
            ]
        );
    }
}
