//! The console's scenes page (`/scenes`, installers): every scene of the site with an editor of
//! its ordered steps and waits (rows `steps[N].action`, `.value`, `.mode`, `.setpoint`, added
//! and removed by `assets/scenes.js`), a form for a new scene, and "try now": run the scene in
//! a room that offers it and see the commands it sent.
//!
//! Edits go through [`crate::site::edit`] (`upsert_scene`, `remove_scene`) and
//! [`super::apply_edit`]; a run through `GatewayHandle::run_scene`, audited, as on a room
//! page. Validation messages from the site validator are English only.

use std::collections::{BTreeSet, HashMap};

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth::{Caller, Role};
use super::rooms::{answer_denied, input, room_scenes, run_scene, scene_names, select, site_doc};
use super::{
    PageCtx, RequestInfo, encode_component, esc, form_body, html, layout, need, page_lang,
    remember, with_ctx,
};
use crate::i18n::{Lang, catalog};
use crate::site::SiteDocument;
use crate::site::edit::{self, Form};

const SCENES_JS: &str = include_str!("assets/scenes.js");

catalog! {
    ScenesMsg;
    Title => "Scenes", "场景";
    Help => "A scene is an ordered list of steps; a wait delays the steps after it. A room offers every scene unless its 'scenes' list names some. 'meeting' and 'leave' are built in: a scene with that name replaces them.", "场景是一组按顺序执行的步骤；“等待”会推迟其后的步骤。会议室默认提供所有场景，除非其“scenes”列表指定了部分场景。“meeting”和“leave”为内置场景，同名场景将替换它们。";
    ValueHelp => "Value: on, off or a level 0–100; a duration for wait (5s); down or up for screen; a position 0–100 for curtains. HVAC steps may add a mode and a setpoint.", "值：on、off 或 0–100 的亮度；等待填写时长（如 5s）；幕布填写 down 或 up；窗帘填写 0–100 的位置。空调步骤可另设模式和设定温度。";
    Name => "Name", "名称";
    Steps => "Steps", "步骤";
    Action => "Action", "动作";
    Value => "Value", "值";
    Mode => "HVAC mode", "空调模式";
    Setpoint => "Setpoint (°C)", "设定温度（°C）";
    NoChoice => "(none)", "（无）";
    AddStep => "Add a step", "添加步骤";
    RemoveStep => "Remove", "删除";
    Save => "Save", "保存";
    RemoveScene => "Remove the scene", "删除场景";
    RemoveConfirm => "Remove this scene from the site?", "确定从站点删除此场景吗？";
    NewScene => "New scene", "新建场景";
    Create => "Create the scene", "创建场景";
    TryNow => "Try now", "立即试运行";
    InRoom => "In room", "会议室";
    NoRoom => "No room offers this scene.", "没有会议室提供此场景。";
    OfferedIn => "Offered in: {rooms}", "提供此场景的会议室：{rooms}";
    NoScenes => "The site defines no scenes yet; rooms use the built-in meeting and leave scenes.", "站点尚未定义场景；会议室使用内置的 meeting 和 leave 场景。";
    MemorySite => "This gateway runs a site given in memory: its scenes cannot be edited here.", "此网关运行的是内存中的站点，无法在此修改场景。";
}

/// The scenes page and its forms.
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let page = warp::path!("scenes")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(scenes_page)
        .boxed();
    let js = warp::path!("assets" / "scenes.js")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(SCENES_JS, "content-type", "text/javascript; charset=utf-8")
                .into_response()
        })
        .boxed();
    let add = warp::path!("scenes")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller, req: RequestInfo, f: HashMap<String, String>, ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                let name = form.get("name").map(|s| s.trim().to_owned()).unwrap_or_default();
                ctx.apply_edit(
                    &caller,
                    &req,
                    "scene.add",
                    &name,
                    "/scenes",
                    |doc| edit::upsert_scene(doc, None, &form),
                )
                .await
            },
        )
        .boxed();
    let change = warp::path!("scenes" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |name: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                ctx.apply_edit(&caller, &req, "scene.change", &name, "/scenes", |doc| {
                    edit::upsert_scene(doc, Some(&name), &form)
                })
                .await
            },
        )
        .boxed();
    let remove = warp::path!("scenes" / String / "remove")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(with_ctx(ctx))
        .then(
            |name: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                ctx.apply_edit(&caller, &req, "scene.remove", &name, "/scenes", |doc| {
                    edit::remove_scene(doc, &name)
                })
                .await
            },
        )
        .boxed();
    let try_now = warp::path!("scenes" / String / "try")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |name: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let room = f
                    .get("room")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                run_scene(&ctx, &caller, &req, lang, &room, &name).await
            },
        )
        .boxed();
    page.or(js)
        .unify()
        .boxed()
        .or(add)
        .unify()
        .boxed()
        .or(change)
        .unify()
        .boxed()
        .or(remove)
        .unify()
        .boxed()
        .or(try_now)
        .unify()
        .boxed()
        .recover(answer_denied)
        .unify()
        .boxed()
}

/// One step row of a scene form; `n` is the row's number (`__N__` in the template).
fn step_row(lang: Lang, n: &str, form: &Form) -> String {
    let key = |k: &str| format!("steps[{n}].{k}");
    let v = |k: &str| form.get(&key(k)).map(String::as_str).unwrap_or("");
    let none = lang.t(ScenesMsg::NoChoice).to_owned();
    let actions: Vec<(String, String)> = std::iter::once((String::new(), none.clone()))
        .chain(
            edit::STEP_ACTIONS
                .iter()
                .map(|a| ((*a).to_owned(), (*a).to_owned())),
        )
        .collect();
    let modes: Vec<(String, String)> = std::iter::once((String::new(), none))
        .chain(
            edit::HVAC_MODES
                .iter()
                .map(|m| ((*m).to_owned(), (*m).to_owned())),
        )
        .collect();
    format!(
        "<div class=\"step-row row\" data-row=\"{n}\">\
         <div>{action}</div><div>{value}</div><div>{mode}</div><div>{setpoint}</div>\
         <div class=\"step-tools\"><button type=\"button\" class=\"secondary\" data-remove-row>{remove}</button></div>\
         <small class=\"err step-err\" data-for=\"steps[{n}]\"></small></div>",
        n = esc(n),
        action = select(
            &key("action"),
            lang.t(ScenesMsg::Action),
            &actions,
            v("action")
        ),
        value = input(
            &key("value"),
            lang.t(ScenesMsg::Value),
            "text",
            v("value"),
            ""
        ),
        mode = select(&key("mode"), lang.t(ScenesMsg::Mode), &modes, v("mode")),
        setpoint = input(
            &key("setpoint"),
            lang.t(ScenesMsg::Setpoint),
            "text",
            v("setpoint"),
            " inputmode=\"decimal\""
        ),
        remove = esc(lang.t(ScenesMsg::RemoveStep)),
    )
}

/// The row numbers a scene form uses, in order.
fn rows(form: &Form) -> Vec<String> {
    let set: BTreeSet<usize> = form
        .keys()
        .filter_map(|k| k.strip_prefix("steps[")?.split_once("].")?.0.parse().ok())
        .collect();
    set.into_iter().map(|n| n.to_string()).collect()
}

/// A scene's editor: its name and its rows, posted to `action`.
fn scene_editor(lang: Lang, action: &str, id: &str, form: &Form, submit: ScenesMsg) -> String {
    let mut rows = rows(form);
    if rows.is_empty() {
        rows.push("0".to_owned());
    }
    let next = rows
        .iter()
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let body: String = rows.iter().map(|n| step_row(lang, n, form)).collect();
    format!(
        "<form method=\"post\" action=\"{action}\" id=\"{id}\" class=\"scene-form\">{name}\
         <h3>{steps}</h3><div class=\"steps\" data-next=\"{next}\">{body}</div>\
         <template class=\"step-template\">{template}</template>\
         <button type=\"button\" class=\"secondary\" data-add-row>{add}</button> \
         <button type=\"submit\">{submit}</button></form>",
        action = esc(action),
        id = esc(id),
        name = input(
            "name",
            lang.t(ScenesMsg::Name),
            "text",
            form.get("name").map(String::as_str).unwrap_or(""),
            " required"
        ),
        steps = esc(lang.t(ScenesMsg::Steps)),
        template = step_row(lang, "__N__", &Form::new()),
        add = esc(lang.t(ScenesMsg::AddStep)),
        submit = esc(lang.t(submit)),
    )
}

fn scene_section(lang: Lang, ctx: &PageCtx, doc: &SiteDocument, name: &str) -> String {
    let form = edit::scene_form(doc, name).unwrap_or_default();
    let href = encode_component(name);
    let snap = ctx.gateway.snapshot();
    let rooms: Vec<(String, String)> = snap
        .rooms
        .iter()
        .filter(|r| room_scenes(Some(doc), r).iter().any(|s| s == name))
        .map(|r| (r.id.clone(), r.name.clone()))
        .collect();
    let try_now = if rooms.is_empty() {
        format!("<p class=\"muted\">{}</p>", esc(lang.t(ScenesMsg::NoRoom)))
    } else {
        let names: Vec<&str> = rooms.iter().map(|(_, n)| n.as_str()).collect();
        format!(
            "<p class=\"hint\">{offered}</p>\
             <form method=\"post\" action=\"/scenes/{href}/try\" class=\"narrow try-now\">{room}\
             <button type=\"submit\">{label}</button><pre class=\"form-result\"></pre></form>",
            offered = esc(&lang.f(ScenesMsg::OfferedIn, &[("rooms", &names.join(", "))])),
            href = esc(&href),
            room = select("room", lang.t(ScenesMsg::InRoom), &rooms, ""),
            label = esc(lang.t(ScenesMsg::TryNow)),
        )
    };
    format!(
        "<section class=\"scene card\" id=\"scene-{id}\"><h2>{title}</h2>{editor}\
         <button class=\"danger\" data-post=\"/scenes/{href}/remove\" data-confirm=\"{confirm}\" \
         data-result=\"remove-{id}\">{remove}</button><pre id=\"remove-{id}\" class=\"result\"></pre>\
         <h3>{try_title}</h3>{try_now}</section>",
        id = esc(name),
        title = esc(name),
        editor = scene_editor(
            lang,
            &format!("/scenes/{href}"),
            &format!("edit-{name}"),
            &form,
            ScenesMsg::Save
        ),
        href = esc(&href),
        confirm = esc(lang.t(ScenesMsg::RemoveConfirm)),
        remove = esc(lang.t(ScenesMsg::RemoveScene)),
        try_title = esc(lang.t(ScenesMsg::TryNow)),
    )
}

async fn scenes_page(
    caller: Caller,
    _req: RequestInfo,
    lang: Lang,
    chosen: bool,
    ctx: PageCtx,
) -> Response {
    let mut body = format!(
        "<p class=\"hint\">{}</p><p class=\"hint\">{}</p>",
        esc(lang.t(ScenesMsg::Help)),
        esc(lang.t(ScenesMsg::ValueHelp))
    );
    match site_doc(&ctx).await {
        None => body.push_str(&format!(
            "<p class=\"err\">{}</p>",
            esc(lang.t(ScenesMsg::MemorySite))
        )),
        Some((doc, table)) => {
            let names = scene_names(&table);
            if names.is_empty() {
                body.push_str(&format!(
                    "<p class=\"muted\">{}</p>",
                    esc(lang.t(ScenesMsg::NoScenes))
                ));
            }
            for name in &names {
                body.push_str(&scene_section(lang, &ctx, &doc, name));
            }
            body.push_str(&format!(
                "<section class=\"scene card\" id=\"new-scene\"><h2>{}</h2>{}</section>",
                esc(lang.t(ScenesMsg::NewScene)),
                scene_editor(
                    lang,
                    "/scenes",
                    "add-scene",
                    &Form::new(),
                    ScenesMsg::Create
                )
            ));
        }
    }
    body.push_str("<script src=\"/assets/scenes.js\" defer></script>");
    remember(
        html(layout(lang, lang.t(ScenesMsg::Title), Some(&caller), &body)),
        lang,
        chosen,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_rows_keep_their_numbers_and_escape_values() {
        let form: Form = [
            ("name", "focus"),
            ("steps[0].action", "lights"),
            ("steps[0].value", "on"),
            ("steps[2].action", "wait"),
            ("steps[2].value", "5s\"><script>"),
            ("steps[10].action", "hvac"),
            ("steps[10].mode", "cool"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(rows(&form), ["0", "2", "10"]);
        let html = scene_editor(
            Lang::En,
            "/scenes/focus",
            "edit-focus",
            &form,
            ScenesMsg::Save,
        );
        assert!(html.contains("data-next=\"11\""), "{html}");
        assert!(html.contains(
            "name=\"steps[2].value\" type=\"text\" value=\"5s&quot;&gt;&lt;script&gt;\""
        ));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<option value=\"cool\" selected>cool</option>"));
        assert!(html.contains("<option value=\"lights\" selected>lights</option>"));
        assert!(html.contains("data-for=\"steps[10]\""));
        // The template's row is numbered by the script.
        assert!(html.contains("name=\"steps[__N__].action\""));
        let zh = scene_editor(
            Lang::ZhCn,
            "/scenes",
            "add-scene",
            &Form::new(),
            ScenesMsg::Create,
        );
        assert!(zh.contains("创建场景") && zh.contains("name=\"steps[0].action\""));
    }

    #[test]
    fn every_text_has_both_languages() {
        for m in ScenesMsg::ALL {
            let (en, zh) = crate::i18n::Texts::texts(*m);
            assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
        }
    }
}
