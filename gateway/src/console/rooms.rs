//! The console's floor overview (`/`), rooms list (`/rooms`) and room pages (`/rooms/{id}`).
//!
//! - The floor shows every room as a card (state in colour, presence, current and next
//!   booking in the site's zone, the room's devices online and their faults) with the floor's
//!   devices and hub link above; the cards follow the gateway live over `/floor/events`, a
//!   server-sent-events stream of the same cards rendered here (so the browser only swaps
//!   HTML). Installers also manage the lobby display's links there.
//! - A room page has today's timeline (bookings, walk-ins, check-ins and releases placed
//!   across the opening hours on the site's wall clock), the activity log with its reasons,
//!   scene buttons and local bookings (operators), and for installers the room's policy,
//!   bindings (a select of the points that fit each capability), door panel links, and the
//!   room itself (edit, remove).
//!
//! Site changes go through [`super::apply_edit`] (live, written back, audited); scenes and
//! bookings through the same `GatewayHandle` calls as the API. Validation messages from the
//! site validator are English only.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;

use ::scenes::{Span, Timestamp};
use futures_util::Stream;
use jiff::tz::TimeZone;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::auth::{Caller, Role, Scope, TokenInfo};
use super::{
    PageCtx, RequestInfo, encode_component, esc, form_body, form_done, form_errors, form_go, html,
    layout, need, page_lang, remember, with_ctx,
};
use crate::api::{ActivityDto, DeviceDto, FloorSnapshot, RoomBookingDto, RoomDto, TimeFmt};
use crate::i18n::{Lang, Msg, catalog};
use crate::runtime::{ApiError, BookingRequest, GatewayHandle, REQUEST_TIMEOUT};
use crate::site::edit::{self, FieldInput, Form};
use crate::site::{Capability, SiteDocument};

const ROOMS_JS: &str = include_str!("assets/rooms.js");

/// The opening hours the day's timeline spans at least (local hours); bookings and events
/// outside them widen it to the whole hour, never beyond the day.
const OPENS_AT: i8 = 7;
const CLOSES_AT: i8 = 20;
/// How many activity lines a room page shows.
const ACTIVITY_LINES: usize = 200;
/// How far ahead a room page lists bookings.
const BOOKINGS_AHEAD: Span = Span::minutes(14 * 24 * 60);
/// Capabilities that are measured: no value while their device is online is a fault.
const SENSORS: [Capability; 6] = [
    Capability::Occupancy,
    Capability::Temperature,
    Capability::Co2,
    Capability::Humidity,
    Capability::Pm25,
    Capability::Voc,
];

catalog! {
    RoomsMsg;
    FloorTitle => "Floor", "楼层";
    RoomsTitle => "Rooms", "会议室";
    PresenceYes => "Someone is in the room", "室内有人";
    PresenceNo => "Empty", "无人";
    PresenceUnknown => "Presence unknown", "无法判断是否有人";
    DevicesOnline => "Devices {online}/{total} online", "设备在线 {online}/{total}";
    NoDevices => "No devices bound", "未绑定设备";
    DeviceOffline => "{device} offline", "{device} 离线";
    DeviceConnecting => "{device} connecting", "{device} 连接中";
    NoValue => "{capability}: no value", "{capability}：无数据";
    FloorDevices => "Floor devices online: {online}/{total}", "楼层设备在线：{online}/{total}";
    CloudUp => "Hub: connected", "云端：已连接";
    CloudDown => "Hub: not connected", "云端：未连接";
    CloudNone => "Hub: not configured", "云端：未配置";
    Today => "Today", "今天";
    Legend => "Legend", "图例";
    LegendBooking => "booking", "预订";
    LegendCheckedIn => "checked in", "已签到";
    LegendReleased => "released", "已释放";
    LegendWalkIn => "walk-in", "临时使用";
    LegendNow => "now", "现在";
    ActivityTitle => "Activity", "活动记录";
    When => "Time", "时间";
    KindCol => "Kind", "类型";
    What => "What happened and why", "事件与原因";
    NoActivity => "Nothing logged yet", "暂无记录";
    ScenesTitle => "Scenes", "场景";
    ScenesHelp => "Runs a scene now; automation waits for the room's override hold.", "立即运行场景；自动控制将暂停至手动保持时间结束。";
    NoScenes => "This room offers no scenes", "此会议室没有可用场景";
    SceneRan => "Scene '{scene}' runs in {room}.", "场景“{scene}”已在 {room} 运行。";
    CommandsSent => "Sent now:", "已发送：";
    NoCommands => "No device commands now (the room may lack the equipment, or the first step is a wait).", "当前没有设备指令（会议室可能没有相应设备，或第一步为等待）。";
    LaterSteps => "Steps after a wait follow later.", "等待之后的步骤稍后执行。";
    BookingsTitle => "Bookings", "预订";
    Subject => "Subject", "主题";
    Organizer => "Organizer", "预订人";
    Start => "Start", "开始";
    End => "End", "结束";
    MinutesField => "or minutes from the start", "或从开始起的分钟数";
    AddBooking => "Add booking", "添加预订";
    CancelBooking => "Cancel", "取消";
    CancelConfirm => "Cancel this booking?", "确定取消此预订吗？";
    NoBookings => "No bookings", "暂无预订";
    SiteTime => "Times in the site's zone ({tz}).", "时间按站点时区（{tz}）。";
    SourceCol => "From", "来源";
    SourceLocal => "this gateway", "本网关";
    SourceHub => "hub", "云端";
    StatusCol => "Status", "状态";
    StatusFinished => "finished", "已结束";
    StatusBooked => "booked", "已预订";
    BadTime => "'{value}' is not a time; write e.g. 2026-03-02T09:00", "“{value}”不是有效时间，例如 2026-03-02T09:00";
    NeedStart => "Give a start, or minutes from now", "请填写开始时间，或从现在起的分钟数";
    NeedEnd => "Give an end or minutes", "请填写结束时间或分钟数";
    EndOrMinutes => "Give an end or minutes, not both", "结束时间和分钟数只能填写一个";
    BadMinutes => "Minutes must be 1 to 1440", "分钟数须在 1 到 1440 之间";
    SubjectTooLong => "At most 200 characters", "最多 200 个字符";
    BookingAdded => "Booked: {subject}, {start}–{end}", "已预订：{subject}，{start}–{end}";
    PolicyTitle => "Policy", "策略";
    PolicyHelp => "Empty fields inherit from the room's template and the site defaults; the value in force is shown below each field. Durations as 90s, 10m, 1h.", "空白项继承模板和站点默认值；每项下方显示当前生效值。时长写作 90s、10m、1h。";
    Inherit => "(inherit)", "（继承）";
    InForce => "in force: {value}", "当前生效：{value}";
    Save => "Save", "保存";
    BindingsTitle => "Bindings", "绑定";
    BindingsHelp => "Each capability of the room and the point it uses; only points that fit are offered.", "会议室的每项功能及其使用的点位；只列出适用的点位。";
    Unbound => "(not bound)", "（未绑定）";
    TokensTitle => "Door panel links", "门牌链接";
    TokensHelp => "A link opens this room's door panel on a tablet. It is shown once, when created.", "链接用于在平板上打开此会议室的门牌，仅在创建时显示一次。";
    DisplayTitle => "Lobby display links", "大堂显示屏链接";
    DisplayHelp => "A link opens the lobby display (every room, read only). It is shown once, when created.", "链接用于打开大堂显示屏（所有会议室，只读），仅在创建时显示一次。";
    Label => "Label", "标签";
    CreateLink => "Create link", "创建链接";
    LinkOnce => "Open this link on the device; it is shown only now:", "请在设备上打开此链接，链接仅显示这一次：";
    Revoke => "Revoke", "撤销";
    RevokeConfirm => "Revoke this link? The device that uses it stops working.", "确定撤销此链接吗？使用它的设备将无法继续工作。";
    NoTokens => "No links yet", "暂无链接";
    Created => "Created", "创建时间";
    CreatedBy => "By", "创建人";
    BadLabel => "A label of 1 to 80 characters", "标签须为 1 到 80 个字符";
    NoToken => "There is no such link for this room", "此会议室没有该链接";
    RoomTitle => "Room settings", "会议室设置";
    RoomId => "Id", "编号";
    RoomName => "Name", "名称";
    RoomKind => "Kind", "类型";
    Capacity => "Capacity", "容纳人数";
    Template => "Template", "模板";
    MeetingScene => "Meeting scene", "会议场景";
    LeaveScene => "Leave scene", "离开场景";
    WalkInScene => "Walk-in scene", "临时使用场景";
    OfferedScenes => "Scenes offered (comma-separated; empty: every scene)", "可用场景（逗号分隔；空白为全部）";
    StaffGroups => "Staff groups that may open the door (comma-separated)", "可开门的员工组（逗号分隔）";
    UnlockFor => "Door unlocks for (e.g. 5s)", "门锁打开时长（例如 5s）";
    DefaultChoice => "(default)", "（默认）";
    RemoveRoom => "Remove the room", "删除会议室";
    RemoveConfirm => "Remove this room from the site? Its bookings stay stored and come back with the room.", "确定从站点删除此会议室吗？其预订会保留，会议室恢复后重新生效。";
    KindBookable => "bookable", "可预订";
    KindInstant => "instant use", "即时使用";
    KindClosed => "closed", "关闭";
    AddRoom => "Add a room", "添加会议室";
    NoRooms => "No rooms yet", "暂无会议室";
    StateCol => "State", "状态";
    Open => "Open", "打开";
    MemorySite => "This gateway runs a site given in memory: its settings cannot be edited here.", "此网关运行的是内存中的站点，无法在此修改设置。";
    Busy => "The gateway is busy; try again.", "网关繁忙，请重试。";
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// The floor, rooms and room pages with their forms (see the module docs).
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let floor = warp::path::end()
        .and(warp::get())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(floor_page)
        .boxed();
    let floor_events = warp::path!("floor" / "events")
        .and(warp::get())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(with_ctx(ctx))
        .map(
            |_: Caller, _: RequestInfo, lang: Lang, _: bool, ctx: PageCtx| {
                sse(floor_stream(ctx, lang))
            },
        )
        .boxed();
    let js = warp::path!("assets" / "rooms.js")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(ROOMS_JS, "content-type", "text/javascript; charset=utf-8")
                .into_response()
        })
        .boxed();
    let display_token = warp::path!("display-tokens")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .map(
            |caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| {
                create_token(&ctx, &caller, &req, lang, &f, Scope::Display, "/display")
            },
        )
        .boxed();
    let display_revoke = warp::path!("display-tokens" / String / "revoke")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .map(
            |id: String, caller: Caller, req: RequestInfo, lang: Lang, _: bool, ctx: PageCtx| {
                revoke_token(&ctx, &caller, &req, lang, &id, &Scope::Display)
            },
        )
        .boxed();
    let list = warp::path!("rooms")
        .and(warp::get())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(rooms_page)
        .boxed();
    let add = warp::path!("rooms")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller, req: RequestInfo, f: HashMap<String, String>, ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                let id = form.get("id").map(|s| s.trim().to_owned()).unwrap_or_default();
                let then = format!("/rooms/{}", encode_component(&id));
                ctx.apply_edit(&caller, &req, "room.add", &id, &then, |doc| {
                    edit::upsert_room(doc, None, &form)
                })
                .await
            },
        )
        .boxed();
    let room = warp::path!("rooms" / String)
        .and(warp::get())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(room_page)
        .boxed();
    let change = warp::path!("rooms" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                let new_id = form
                    .get("id")
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| id.clone());
                let then = format!("/rooms/{}", encode_component(&new_id));
                ctx.apply_edit(&caller, &req, "room.change", &id, &then, |doc| {
                    edit::upsert_room(doc, Some(&id), &form)
                })
                .await
            },
        )
        .boxed();
    let remove = warp::path!("rooms" / String / "remove")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(with_ctx(ctx))
        .then(
            |id: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                ctx.apply_edit(&caller, &req, "room.remove", &id, "/rooms", |doc| {
                    edit::remove_room(doc, &id)
                })
                .await
            },
        )
        .boxed();
    let policy = warp::path!("rooms" / String / "policy")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                ctx.apply_edit(&caller, &req, "room.policy", &id, "reload", |doc| {
                    edit::set_policy(doc, &id, &form)
                })
                .await
            },
        )
        .boxed();
    let bindings = warp::path!("rooms" / String / "bindings")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                ctx.apply_edit(&caller, &req, "room.bindings", &id, "reload", |doc| {
                    edit::set_bindings(doc, &id, &form)
                })
                .await
            },
        )
        .boxed();
    let scene = warp::path!("rooms" / String / "scene")
        .and(warp::post())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let scene = f
                    .get("scene")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                run_scene(&ctx, &caller, &req, lang, &id, &scene).await
            },
        )
        .boxed();
    let add_booking = warp::path!("rooms" / String / "bookings")
        .and(warp::post())
        .and(need(c, Role::Operator))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                add_booking(&ctx, &caller, &req, lang, &id, &form).await
            },
        )
        .boxed();
    let cancel_booking = warp::path!("rooms" / String / "bookings" / String / "cancel")
        .and(warp::post())
        .and(need(c, Role::Operator))
        .and(with_ctx(ctx))
        .then(
            |id: String, booking: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                match timed(ctx.gateway.cancel_booking(&id, &booking)).await {
                    Ok(()) => {
                        ctx.console.audit(&caller, &req.from(), "booking.cancel", &id, &booking);
                        form_go("reload")
                    }
                    Err(e) => api_refusal(&e),
                }
            },
        )
        .boxed();
    let panel_token = warp::path!("rooms" / String / "tokens")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .map(
            |id: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| {
                if !ctx.gateway.snapshot().rooms.iter().any(|r| r.id == id) {
                    return not_found(lang, &id);
                }
                let path = format!("/panel/{}", encode_component(&id));
                create_token(
                    &ctx,
                    &caller,
                    &req,
                    lang,
                    &f,
                    Scope::Panel { room: id },
                    &path,
                )
            },
        )
        .boxed();
    let panel_revoke = warp::path!("rooms" / String / "tokens" / String / "revoke")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .map(
            |id: String,
             token: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             ctx: PageCtx| {
                revoke_token(
                    &ctx,
                    &caller,
                    &req,
                    lang,
                    &token,
                    &Scope::Panel { room: id },
                )
            },
        )
        .boxed();
    floor
        .or(floor_events)
        .unify()
        .boxed()
        .or(js)
        .unify()
        .boxed()
        .or(display_token)
        .unify()
        .boxed()
        .or(display_revoke)
        .unify()
        .boxed()
        .or(list)
        .unify()
        .boxed()
        .or(add)
        .unify()
        .boxed()
        .or(room)
        .unify()
        .boxed()
        .or(change)
        .unify()
        .boxed()
        .or(remove)
        .unify()
        .boxed()
        .or(policy)
        .unify()
        .boxed()
        .or(bindings)
        .unify()
        .boxed()
        .or(scene)
        .unify()
        .boxed()
        .or(add_booking)
        .unify()
        .boxed()
        .or(cancel_booking)
        .unify()
        .boxed()
        .or(panel_token)
        .unify()
        .boxed()
        .or(panel_revoke)
        .unify()
        .boxed()
        .recover(answer_denied)
        .unify()
        .boxed()
}

/// Answers the gate's refusal (401 or a redirect to the login page, 403) here: the web
/// side's later routes end in a catch-all 404, which would otherwise win over it.
pub(crate) async fn answer_denied(r: Rejection) -> Result<Response, Rejection> {
    match r.find::<super::Denied>() {
        Some(d) => Ok(d.into_response()),
        None => Err(r),
    }
}

pub(crate) async fn timed<T>(f: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::Unavailable(
                "the gateway is busy; try again".into(),
            ))
        })
}

/// A refused gateway call as a form answer (the gateway's words, English).
pub(crate) fn api_refusal(e: &ApiError) -> Response {
    let mut r = form_errors(&[], Some(&e.to_string()));
    if matches!(e, ApiError::NotFound(_)) {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

fn page(lang: Lang, chosen: bool, title: &str, caller: &Caller, body: &str) -> Response {
    remember(html(layout(lang, title, Some(caller), body)), lang, chosen)
}

fn not_found(lang: Lang, room: &str) -> Response {
    let mut r = form_errors(&[], Some(&lang.f(Msg::NoSuchRoom, &[("room", room)])));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The running site's document and its text parsed as a table (for the lists of scenes and
/// templates), or `None` when the gateway runs a site given in memory.
pub(crate) async fn site_doc(ctx: &PageCtx) -> Option<(SiteDocument, toml::Table)> {
    let text = ctx.site.current_toml().await.ok()?;
    let doc = match SiteDocument::load(&text) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("console: the running site does not load again: {e}");
            return None;
        }
    };
    let table = toml::from_str::<toml::Table>(&text).unwrap_or_default();
    Some((doc, table))
}

/// The names of the scenes the site file defines, in its order.
pub(crate) fn scene_names(table: &toml::Table) -> Vec<String> {
    (table.get("scenes").and_then(toml::Value::as_array))
        .map(|list| {
            list.iter()
                .filter_map(|s| s.get("name").and_then(toml::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The scenes a room can run by name: its meeting, leave and walk-in scenes and the ones it
/// offers, each once.
pub(crate) fn room_scenes(doc: Option<&SiteDocument>, r: &RoomDto) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    match doc.and_then(|d| d.site().room(&r.id)) {
        Some(room) => {
            let c = &room.config;
            let all = [&c.meeting_scene, &c.leave_scene, &c.walk_in_scene]
                .into_iter()
                .chain(c.extra_scenes.iter());
            for s in all {
                if !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
            }
        }
        None => {
            for s in ["meeting", "leave"]
                .into_iter()
                .map(str::to_owned)
                .chain(r.scenes.iter().cloned())
            {
                if !names.contains(&s) {
                    names.push(s);
                }
            }
        }
    }
    names
}

pub(crate) fn input(name: &str, label: &str, kind: &str, value: &str, extra: &str) -> String {
    format!(
        "<label>{label}<input name=\"{n}\" type=\"{kind}\" value=\"{v}\"{extra}></label>\
         <small class=\"err\" data-for=\"{n}\"></small>",
        label = esc(label),
        n = esc(name),
        v = esc(value),
    )
}

pub(crate) fn select(
    name: &str,
    label: &str,
    options: &[(String, String)],
    selected: &str,
) -> String {
    let mut out = format!("<label>{}<select name=\"{}\">", esc(label), esc(name));
    let mut found = false;
    for (value, text) in options {
        let sel = if value == selected && !found {
            found = true;
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        ));
    }
    if !found && !selected.is_empty() {
        out.push_str(&format!(
            "<option value=\"{v}\" selected>{v}</option>",
            v = esc(selected)
        ));
    }
    out.push_str(&format!(
        "</select></label><small class=\"err\" data-for=\"{}\"></small>",
        esc(name)
    ));
    out
}

fn kind_label(lang: Lang, kind: &str) -> String {
    match kind {
        "bookable" => lang.t(RoomsMsg::KindBookable).to_owned(),
        "instant_use" => lang.t(RoomsMsg::KindInstant).to_owned(),
        "closed" => lang.t(RoomsMsg::KindClosed).to_owned(),
        other => other.to_owned(),
    }
}

fn state_badge(lang: Lang, state: &str) -> String {
    let label = Msg::for_state(state).map_or_else(|| state.to_owned(), |m| lang.t(m).to_owned());
    format!(
        "<span class=\"state {}\">{}</span>",
        esc(state),
        esc(&label)
    )
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

// ---------------------------------------------------------------------------------------
// The floor
// ---------------------------------------------------------------------------------------

/// The line above the cards: site, time, rooms free, floor devices, the hub link.
fn floor_summary(lang: Lang, time: &TimeFmt, snap: &FloorSnapshot) -> String {
    let online = snap.devices.iter().filter(|d| d.state == "online").count();
    let free = snap.rooms.iter().filter(|r| r.state == "free").count();
    let (cloud_class, cloud) = match snap.cloud {
        "up" => ("online", RoomsMsg::CloudUp),
        "down" => ("offline", RoomsMsg::CloudDown),
        _ => ("muted", RoomsMsg::CloudNone),
    };
    let devices_class = if online == snap.devices.len() {
        "online"
    } else {
        "offline"
    };
    format!(
        "<strong>{site}</strong> <span class=\"muted\">{clock}</span> \
         <span>{free}</span> <span class=\"{devices_class}\">{devices}</span> \
         <span class=\"{cloud_class}\" id=\"cloud-link\">{cloud}</span>",
        site = esc(&snap.site),
        clock = esc(&time.hh_mm(ts(snap.now_ms))),
        free = esc(&lang.f(
            Msg::RoomsFree,
            &[
                ("free", &free.to_string()),
                ("total", &snap.rooms.len().to_string())
            ]
        )),
        devices = esc(&lang.f(
            RoomsMsg::FloorDevices,
            &[
                ("online", &online.to_string()),
                ("total", &snap.devices.len().to_string())
            ]
        )),
        cloud = esc(lang.t(cloud)),
    )
}

/// The room's devices (from its bindings) and the faults worth a chip.
fn room_health(lang: Lang, r: &RoomDto, devices: &[DeviceDto]) -> (usize, usize, Vec<String>) {
    let ids: BTreeSet<&str> = r
        .points
        .iter()
        .filter_map(|p| p.point.split_once('/').map(|(d, _)| d))
        .collect();
    let mut online = 0;
    let mut total = 0;
    let mut chips = Vec::new();
    let mut offline_ids = BTreeSet::new();
    for id in ids {
        let Some(d) = devices.iter().find(|d| d.id == id) else {
            continue;
        };
        total += 1;
        match d.state {
            "online" => online += 1,
            "connecting" => {
                offline_ids.insert(id);
                chips.push(lang.f(RoomsMsg::DeviceConnecting, &[("device", &d.name)]));
            }
            _ => {
                offline_ids.insert(id);
                chips.push(lang.f(RoomsMsg::DeviceOffline, &[("device", &d.name)]));
            }
        }
    }
    for p in &r.points {
        let sensor = SENSORS.iter().any(|c| c.key() == p.capability);
        let device = p.point.split_once('/').map_or("", |(d, _)| d);
        if sensor && p.value.is_null() && !offline_ids.contains(device) && total > 0 {
            chips.push(lang.f(RoomsMsg::NoValue, &[("capability", p.capability)]));
        }
    }
    (online, total, chips)
}

/// One room's card on the floor (a link to its page).
pub(crate) fn room_card(lang: Lang, time: &TimeFmt, r: &RoomDto, devices: &[DeviceDto]) -> String {
    let presence = match r.occupancy {
        "occupied" => RoomsMsg::PresenceYes,
        "vacant" => RoomsMsg::PresenceNo,
        _ => RoomsMsg::PresenceUnknown,
    };
    let seats = match r.capacity {
        0 => String::new(),
        1 => format!(" · {}", lang.t(Msg::OneSeat)),
        n => format!(" · {}", lang.f(Msg::Seats, &[("n", &n.to_string())])),
    };
    let meeting = |label: Msg, b: &crate::api::BookingDto| {
        let checked = if b.checked_in {
            format!(
                " <span class=\"ok\">✓ {}</span>",
                esc(lang.t(Msg::CheckedIn))
            )
        } else {
            String::new()
        };
        format!(
            "<div class=\"meeting\"><span class=\"muted\">{label}</span> {time} \
             <strong>{subject}</strong> <span class=\"muted\">{organizer}</span>{checked}</div>",
            label = esc(lang.t(label)),
            time = esc(&format!(
                "{}–{}",
                time.hh_mm(ts(b.start_ms)),
                time.hh_mm(ts(b.end_ms))
            )),
            subject = esc(&b.subject),
            organizer = esc(&lang.f(Msg::ByOrganizer, &[("name", &b.organizer)])),
        )
    };
    let mut meetings = String::new();
    if let Some(b) = &r.current {
        meetings.push_str(&meeting(Msg::Now, b));
    }
    match &r.next {
        Some(b) => meetings.push_str(&meeting(Msg::Next, b)),
        None => meetings.push_str(&format!(
            "<div class=\"meeting muted\">{}</div>",
            esc(lang.t(Msg::NothingNext))
        )),
    }
    let (online, total, chips) = room_health(lang, r, devices);
    let health = if total == 0 {
        format!(
            "<span class=\"muted\">{}</span>",
            esc(lang.t(RoomsMsg::NoDevices))
        )
    } else {
        format!(
            "<span class=\"{}\">{}</span>",
            if online == total { "online" } else { "offline" },
            esc(&lang.f(
                RoomsMsg::DevicesOnline,
                &[
                    ("online", &online.to_string()),
                    ("total", &total.to_string())
                ]
            ))
        )
    };
    let chips: String = chips
        .iter()
        .map(|c| format!("<span class=\"chip\">{}</span>", esc(c)))
        .collect();
    format!(
        "<a class=\"card room-card\" id=\"room-{id_attr}\" data-room=\"{id_attr}\" \
         data-state=\"{state}\" href=\"/rooms/{href}\">\
         <div class=\"room-head\"><strong>{name}</strong>{badge}</div>\
         <div class=\"muted\">{presence}{seats}</div>{meetings}\
         <div class=\"health\">{health} {chips}</div></a>",
        id_attr = esc(&r.id),
        state = esc(r.state),
        href = esc(&encode_component(&r.id)),
        name = esc(&r.name),
        badge = state_badge(lang, r.state),
        presence = esc(lang.t(presence)),
        seats = esc(&seats),
    )
}

fn floor_grid(lang: Lang, time: &TimeFmt, snap: &FloorSnapshot) -> String {
    if snap.rooms.is_empty() {
        return format!("<p class=\"muted\">{}</p>", esc(lang.t(RoomsMsg::NoRooms)));
    }
    snap.rooms
        .iter()
        .map(|r| room_card(lang, time, r, &snap.devices))
        .collect()
}

async fn floor_page(
    caller: Caller,
    req: RequestInfo,
    lang: Lang,
    chosen: bool,
    ctx: PageCtx,
) -> Response {
    let snap = ctx.gateway.snapshot();
    let time = &ctx.gateway.time;
    let mut body = format!(
        "<p class=\"floor-bar\" id=\"floor-summary\">{summary}</p>\
         <div class=\"grid\" id=\"floor-grid\" data-live=\"/floor/events?lang={tag}\">{grid}</div>",
        summary = floor_summary(lang, time, &snap),
        grid = floor_grid(lang, time, &snap),
        tag = lang.tag(),
    );
    if caller.role() == Some(Role::Installer) {
        body.push_str(&tokens_section(
            &ctx,
            &req,
            lang,
            &Scope::Display,
            "/display-tokens",
            RoomsMsg::DisplayTitle,
            RoomsMsg::DisplayHelp,
        ));
    }
    body.push_str("<script src=\"/assets/rooms.js\" defer></script>");
    page(lang, chosen, lang.t(RoomsMsg::FloorTitle), &caller, &body)
}

/// What the floor's stream sends: the summary line and the cards, rendered.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct FloorParts {
    summary: String,
    grid: String,
}

fn sse(
    events: impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static,
) -> Response {
    let events = warp::sse::keep_alive()
        .interval(std::time::Duration::from_secs(15))
        .stream(events);
    warp::reply::with_header(warp::sse::reply(events), "cache-control", "no-store").into_response()
}

/// The floor's cards, once at once and again at each change. A task per stream follows the
/// snapshot; it ends when the browser goes away (the server closes connections when it
/// stops) or the gateway stops.
fn floor_stream(
    ctx: PageCtx,
    lang: Lang,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(4);
    let mut snapshots = ctx.gateway.watch();
    let time = ctx.gateway.time.clone();
    tokio::spawn(async move {
        let mut last: Option<FloorParts> = None;
        loop {
            let snap = snapshots.borrow_and_update().clone();
            let parts = FloorParts {
                summary: floor_summary(lang, &time, &snap),
                grid: floor_grid(lang, &time, &snap),
            };
            if last.as_ref() != Some(&parts) {
                let mut event = warp::sse::Event::default();
                if last.is_none() {
                    event = event.retry(std::time::Duration::from_secs(2));
                }
                if let Ok(event) = event.json_data(&parts)
                    && tx.send(event).await.is_err()
                {
                    return;
                }
                last = Some(parts);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}

// ---------------------------------------------------------------------------------------
// Tokens (door panels, lobby display)
// ---------------------------------------------------------------------------------------

fn tokens_of(ctx: &PageCtx, scope: &Scope) -> Vec<TokenInfo> {
    match ctx.console.accounts.tokens() {
        Ok(list) => list.into_iter().filter(|t| &t.scope == scope).collect(),
        Err(e) => {
            tracing::error!("console: reading tokens: {e}");
            Vec::new()
        }
    }
}

/// A list of `scope`'s links with revoke buttons, and the form that creates one.
fn tokens_section(
    ctx: &PageCtx,
    _req: &RequestInfo,
    lang: Lang,
    scope: &Scope,
    base: &str,
    title: RoomsMsg,
    help: RoomsMsg,
) -> String {
    let tokens = tokens_of(ctx, scope);
    let rows: String = if tokens.is_empty() {
        format!(
            "<tr><td colspan=\"4\" class=\"muted\">{}</td></tr>",
            esc(lang.t(RoomsMsg::NoTokens))
        )
    } else {
        tokens
            .iter()
            .map(|t| {
                format!(
                    "<tr data-token=\"{id}\"><td>{label}</td><td>{created}</td><td>{by}</td>\
                     <td><button class=\"danger\" data-post=\"{base}/{id}/revoke\" \
                     data-confirm=\"{confirm}\">{revoke}</button></td></tr>",
                    id = esc(&t.id),
                    label = esc(&t.label),
                    created = esc(&super::local_time(&ctx.gateway, t.created_ms)),
                    by = esc(&t.created_by),
                    confirm = esc(lang.t(RoomsMsg::RevokeConfirm)),
                    revoke = esc(lang.t(RoomsMsg::Revoke)),
                )
            })
            .collect()
    };
    format!(
        "<section class=\"tokens\"><h2>{title}</h2><p class=\"hint\">{help}</p>\
         <table><thead><tr><th>{label}</th><th>{created}</th><th>{by}</th><th></th></tr></thead>\
         <tbody>{rows}</tbody></table>\
         <form method=\"post\" action=\"{base}\" class=\"narrow\">{field}\
         <button type=\"submit\">{create}</button><pre class=\"form-result token-link\"></pre></form>\
         </section>",
        title = esc(lang.t(title)),
        help = esc(lang.t(help)),
        label = esc(lang.t(RoomsMsg::Label)),
        created = esc(lang.t(RoomsMsg::Created)),
        by = esc(lang.t(RoomsMsg::CreatedBy)),
        field = input(
            "label",
            lang.t(RoomsMsg::Label),
            "text",
            "",
            " maxlength=\"80\" required"
        ),
        create = esc(lang.t(RoomsMsg::CreateLink)),
    )
}

/// Creates a token and answers with its link, shown this once.
fn create_token(
    ctx: &PageCtx,
    caller: &Caller,
    req: &RequestInfo,
    lang: Lang,
    f: &HashMap<String, String>,
    scope: Scope,
    path: &str,
) -> Response {
    let label = f.get("label").map(String::as_str).unwrap_or("");
    let made = ctx.console.accounts.create_token(
        ctx.console.now_ms(),
        &caller.who(),
        &req.from(),
        label,
        scope,
    );
    match made {
        Ok((secret, _)) => {
            let host = req.host.as_deref().unwrap_or("gateway");
            let link = format!("https://{host}{path}?token={secret}");
            form_done(&format!("{}\n{link}", lang.t(RoomsMsg::LinkOnce)))
        }
        Err(super::auth::AuthError::BadLabel) => form_errors(
            &[("label".to_owned(), lang.t(RoomsMsg::BadLabel).to_owned())],
            None,
        ),
        Err(e) => form_errors(&[], Some(&e.to_string())),
    }
}

/// Revokes the token `id` if it has `scope` (a room page revokes only its room's links).
fn revoke_token(
    ctx: &PageCtx,
    caller: &Caller,
    req: &RequestInfo,
    lang: Lang,
    id: &str,
    scope: &Scope,
) -> Response {
    if !tokens_of(ctx, scope).iter().any(|t| t.id == id) {
        let mut r = form_errors(&[], Some(lang.t(RoomsMsg::NoToken)));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    match ctx
        .console
        .accounts
        .revoke_token(ctx.console.now_ms(), caller, &req.from(), id)
    {
        Ok(()) => form_go("reload"),
        Err(e) => form_errors(&[], Some(&e.to_string())),
    }
}

// ---------------------------------------------------------------------------------------
// The rooms list
// ---------------------------------------------------------------------------------------

fn kind_options(lang: Lang) -> Vec<(String, String)> {
    edit::ROOM_KINDS
        .iter()
        .map(|k| ((*k).to_owned(), kind_label(lang, k)))
        .collect()
}

async fn rooms_page(
    caller: Caller,
    _req: RequestInfo,
    lang: Lang,
    chosen: bool,
    ctx: PageCtx,
) -> Response {
    let snap = ctx.gateway.snapshot();
    let rows: String = if snap.rooms.is_empty() {
        format!(
            "<tr><td colspan=\"5\" class=\"muted\">{}</td></tr>",
            esc(lang.t(RoomsMsg::NoRooms))
        )
    } else {
        snap.rooms
            .iter()
            .map(|r| {
                format!(
                    "<tr><td><a href=\"/rooms/{href}\">{name}</a></td><td>{id}</td><td>{kind}</td>\
                     <td>{capacity}</td><td>{state}</td></tr>",
                    href = esc(&encode_component(&r.id)),
                    name = esc(&r.name),
                    id = esc(&r.id),
                    kind = esc(&kind_label(lang, r.kind)),
                    capacity = r.capacity,
                    state = state_badge(lang, r.state),
                )
            })
            .collect()
    };
    let mut body = format!(
        "<table class=\"rooms\"><thead><tr><th>{name}</th><th>{id}</th><th>{kind}</th>\
         <th>{capacity}</th><th>{state}</th></tr></thead><tbody>{rows}</tbody></table>",
        name = esc(lang.t(RoomsMsg::RoomName)),
        id = esc(lang.t(RoomsMsg::RoomId)),
        kind = esc(lang.t(RoomsMsg::RoomKind)),
        capacity = esc(lang.t(RoomsMsg::Capacity)),
        state = esc(lang.t(RoomsMsg::StateCol)),
    );
    if caller.role() == Some(Role::Installer) {
        body.push_str(&format!(
            "<h2>{title}</h2><form method=\"post\" action=\"/rooms\" class=\"narrow\" id=\"add-room\">\
             {id}{name}{kind}{capacity}{template}<button type=\"submit\">{submit}</button></form>",
            title = esc(lang.t(RoomsMsg::AddRoom)),
            id = input("id", lang.t(RoomsMsg::RoomId), "text", "", " required"),
            name = input("name", lang.t(RoomsMsg::RoomName), "text", "", " required"),
            kind = select(
                "kind",
                lang.t(RoomsMsg::RoomKind),
                &kind_options(lang),
                "bookable"
            ),
            capacity = input(
                "capacity",
                lang.t(RoomsMsg::Capacity),
                "number",
                "",
                " min=\"0\""
            ),
            template = input("template", lang.t(RoomsMsg::Template), "text", "", ""),
            submit = esc(lang.t(RoomsMsg::AddRoom)),
        ));
    }
    page(lang, chosen, lang.t(RoomsMsg::RoomsTitle), &caller, &body)
}

// ---------------------------------------------------------------------------------------
// Today's timeline (pure geometry)
// ---------------------------------------------------------------------------------------

const HOUR_MS: i64 = 3_600_000;

/// The part of a local day a timeline shows, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Day {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Day {
    /// Where `ms` falls, in percent of the width (clamped to the ends).
    pub fn pct(&self, ms: i64) -> f64 {
        let width = (self.end_ms - self.start_ms).max(1) as f64;
        ((ms - self.start_ms) as f64 / width * 100.0).clamp(0.0, 100.0)
    }

    /// `(left, width)` in percent of `[from, to)`, or `None` when it is outside the window.
    pub fn bar(&self, from_ms: i64, to_ms: i64) -> Option<(f64, f64)> {
        if to_ms <= self.start_ms || from_ms >= self.end_ms || to_ms <= from_ms {
            return None;
        }
        let left = self.pct(from_ms);
        Some((left, self.pct(to_ms) - left))
    }
}

fn zoned(tz: &TimeZone, ms: i64) -> Option<jiff::Zoned> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_zoned(tz.clone()))
}

fn local_ms(tz: &TimeZone, dt: jiff::civil::DateTime) -> Option<i64> {
    dt.to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// The window of the local day of `now_ms` in `tz` a timeline shows: the opening hours
/// ([`OPENS_AT`]–[`CLOSES_AT`] on the wall clock), widened by whole hours until `now` and
/// every span fits, never beyond the day's midnights. On a daylight-saving day the window
/// holds one hour less or more, and everything is placed by its instant.
pub(crate) fn day_window(tz: &TimeZone, now_ms: i64, spans: &[(i64, i64)]) -> Day {
    let fallback = Day {
        start_ms: now_ms - 12 * HOUR_MS,
        end_ms: now_ms + 12 * HOUR_MS,
    };
    let Some(now) = zoned(tz, now_ms) else {
        return fallback;
    };
    let date = now.date();
    let midnight = |d: jiff::civil::Date| {
        d.to_zoned(tz.clone())
            .ok()
            .map(|z| z.timestamp().as_millisecond())
    };
    let (Some(day_start), Some(day_end), Some(open), Some(close)) = (
        midnight(date),
        date.tomorrow().ok().and_then(midnight),
        local_ms(tz, date.at(OPENS_AT, 0, 0, 0)),
        local_ms(tz, date.at(CLOSES_AT, 0, 0, 0)),
    ) else {
        return fallback;
    };
    let today: Vec<(i64, i64)> = spans
        .iter()
        .filter(|(a, b)| *a < day_end && *b > day_start)
        .copied()
        .collect();
    let earliest = today.iter().map(|(a, _)| *a).chain([now_ms]).min();
    let latest = today.iter().map(|(_, b)| *b).chain([now_ms]).max();
    let mut start = open;
    if let Some(e) = earliest
        && e < open
    {
        // Whole hours back from the opening (on the wall clock's hour grid).
        start = open - (open - e + HOUR_MS - 1) / HOUR_MS * HOUR_MS;
    }
    let mut end = close;
    if let Some(l) = latest
        && l > close
    {
        end = close + (l - close + HOUR_MS - 1) / HOUR_MS * HOUR_MS;
    }
    Day {
        start_ms: start.max(day_start),
        end_ms: end.min(day_end),
    }
}

/// The hour marks of `day`: each whole hour's place and its wall-clock label (on a
/// daylight-saving day one label is skipped or repeated, as the clock does).
pub(crate) fn hour_ticks(tz: &TimeZone, day: &Day) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut t = day.start_ms;
    while t <= day.end_ms {
        if let Some(z) = zoned(tz, t) {
            out.push((day.pct(t), z.strftime("%H:%M").to_string()));
        }
        t += HOUR_MS;
    }
    out
}

/// The outcome words of an activity line (`walk-in started [id]: why` → `walk-in started`).
fn outcome_words(text: &str) -> &str {
    let end = [text.find(" ["), text.find(':')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// What a timeline shows besides bookings, from the room's activity log.
#[derive(Debug, Default)]
struct ActivityMarks {
    /// Walk-ins as `(start, end)`; one still running ends at `now`.
    walk_ins: Vec<(i64, i64)>,
    /// Releases: when, and the log line.
    releases: Vec<(i64, String)>,
}

/// The walk-ins and releases in `activity` (newest first, as the gateway gives it).
fn activity_marks(activity: &[ActivityDto], now_ms: i64) -> ActivityMarks {
    let mut marks = ActivityMarks::default();
    let mut open: Option<i64> = None;
    for a in activity.iter().rev().filter(|a| a.kind == "outcome") {
        match outcome_words(&a.text) {
            "walk-in started" if open.is_none() => open = Some(a.at_ms),
            "walk-in ended" => {
                if let Some(s) = open.take() {
                    marks.walk_ins.push((s, a.at_ms));
                }
            }
            w if w.starts_with("released") => marks.releases.push((a.at_ms, a.text.clone())),
            _ => {}
        }
    }
    if let Some(s) = open {
        marks.walk_ins.push((s, now_ms.max(s + 60_000)));
    }
    marks
}

fn timeline(
    lang: Lang,
    time: &TimeFmt,
    now_ms: i64,
    bookings: &[RoomBookingDto],
    activity: &[ActivityDto],
) -> String {
    let tz = &time.tz;
    let ActivityMarks { walk_ins, releases } = activity_marks(activity, now_ms);
    let spans: Vec<(i64, i64)> = (bookings.iter())
        .map(|b| (b.booking.start_ms, b.booking.end_ms))
        .chain(walk_ins.iter().copied())
        .collect();
    let day = day_window(tz, now_ms, &spans);
    let hm = |ms: i64| time.hh_mm(ts(ms));
    let mut hours = String::new();
    for (i, (pct, label)) in hour_ticks(tz, &day).iter().enumerate() {
        hours.push_str(&format!(
            "<span class=\"{}\" style=\"left:{pct:.3}%\">{}</span>",
            if i % 2 == 1 { "odd" } else { "even" },
            esc(label)
        ));
    }
    let mut track = String::new();
    for b in bookings {
        let Some((left, width)) = day.bar(b.booking.start_ms, b.booking.end_ms) else {
            continue;
        };
        let mut class = String::from("tl-block tl-booking");
        if b.checked_in_ms.is_some() {
            class.push_str(" checked");
        }
        if b.finished_ms.is_some() {
            class.push_str(" finished");
        }
        let title = format!(
            "{}–{} {} ({})",
            hm(b.booking.start_ms),
            hm(b.booking.end_ms),
            b.booking.subject,
            b.booking.organizer
        );
        track.push_str(&format!(
            "<div class=\"{class}\" style=\"left:{left:.3}%;width:{width:.3}%\" title=\"{t}\" \
             data-booking=\"{id}\">{subject}</div>",
            t = esc(&title),
            id = esc(&b.booking.id),
            subject = esc(&b.booking.subject),
        ));
        if let Some(at) = b
            .checked_in_ms
            .filter(|t| *t >= day.start_ms && *t <= day.end_ms)
        {
            track.push_str(&format!(
                "<div class=\"tl-mark checkin\" style=\"left:{:.3}%\" title=\"{}\"></div>",
                day.pct(at),
                esc(&format!("{} {}", lang.t(RoomsMsg::LegendCheckedIn), hm(at)))
            ));
        }
    }
    for (s, e) in &walk_ins {
        if let Some((left, width)) = day.bar(*s, *e) {
            track.push_str(&format!(
                "<div class=\"tl-block tl-walkin\" style=\"left:{left:.3}%;width:{width:.3}%\" \
                 title=\"{}\"></div>",
                esc(&format!(
                    "{} {}–{}",
                    lang.t(RoomsMsg::LegendWalkIn),
                    hm(*s),
                    hm(*e)
                ))
            ));
        }
    }
    for (at, text) in &releases {
        if *at >= day.start_ms && *at <= day.end_ms {
            track.push_str(&format!(
                "<div class=\"tl-mark release\" style=\"left:{:.3}%\" title=\"{}\"></div>",
                day.pct(*at),
                esc(&format!("{} {text}", hm(*at)))
            ));
        }
    }
    track.push_str(&format!(
        "<div class=\"tl-now\" style=\"left:{:.3}%\" title=\"{}\"></div>",
        day.pct(now_ms),
        esc(&format!("{} {}", lang.t(RoomsMsg::LegendNow), hm(now_ms)))
    ));
    let legend = [
        ("tl-booking", RoomsMsg::LegendBooking),
        ("tl-booking checked", RoomsMsg::LegendCheckedIn),
        ("tl-walkin", RoomsMsg::LegendWalkIn),
        ("release", RoomsMsg::LegendReleased),
        ("now", RoomsMsg::LegendNow),
    ]
    .iter()
    .map(|(class, m)| {
        format!(
            "<span><i class=\"tl-key {class}\"></i>{}</span>",
            esc(lang.t(*m))
        )
    })
    .collect::<String>();
    format!(
        "<div class=\"timeline\" data-start=\"{start}\" data-end=\"{end}\">\
         <div class=\"tl-hours\">{hours}</div><div class=\"tl-track\">{track}</div></div>\
         <p class=\"tl-legend hint\">{legend}</p>",
        start = esc(&time.rfc3339(ts(day.start_ms))),
        end = esc(&time.rfc3339(ts(day.end_ms))),
    )
}

// ---------------------------------------------------------------------------------------
// A room's page
// ---------------------------------------------------------------------------------------

async fn room_page(
    id: String,
    caller: Caller,
    req: RequestInfo,
    lang: Lang,
    chosen: bool,
    ctx: PageCtx,
) -> Response {
    let g = &ctx.gateway;
    let snap = g.snapshot();
    let Some(r) = snap.rooms.iter().find(|r| r.id == id) else {
        let text = lang.f(Msg::NoSuchRoom, &[("room", &id)]);
        let mut resp = page(
            lang,
            chosen,
            lang.t(RoomsMsg::RoomsTitle),
            &caller,
            &format!("<p class=\"err\">{}</p>", esc(&text)),
        );
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let installer = caller.role() == Some(Role::Installer);
    let now_ms = g.clock.now().as_millis();
    let doc = site_doc(&ctx).await;
    let day = day_window(&g.time.tz, now_ms, &[]);
    let from = (day.start_ms).min(now_ms) - 24 * HOUR_MS;
    let bookings = timed(g.bookings(&id, from, now_ms + BOOKINGS_AHEAD.as_millis()))
        .await
        .unwrap_or_default();
    let activity = timed(g.activity(&id, ACTIVITY_LINES))
        .await
        .unwrap_or_default();
    let today_bookings: Vec<RoomBookingDto> = bookings
        .iter()
        .filter(|b| {
            same_local_day(&g.time, b.booking.start_ms, now_ms)
                || same_local_day(&g.time, b.booking.end_ms - 1, now_ms)
        })
        .cloned()
        .collect();
    let mut body = String::new();
    // The room now.
    body.push_str(&format!(
        "<div class=\"room-now\">{card}</div>",
        card = room_card(lang, &g.time, r, &snap.devices)
    ));
    // Today.
    body.push_str(&format!(
        "<h2>{today} <span class=\"muted\">{date}</span></h2>{timeline}",
        today = esc(lang.t(RoomsMsg::Today)),
        date = esc(g.time.rfc3339(ts(now_ms)).get(..10).unwrap_or("")),
        timeline = timeline(lang, &g.time, now_ms, &today_bookings, &activity),
    ));
    // Scenes.
    body.push_str(&scenes_section(lang, doc.as_ref().map(|(d, _)| d), r));
    // Bookings.
    body.push_str(&bookings_section(lang, g, r, now_ms, &bookings, &caller));
    // Activity.
    body.push_str(&activity_section(lang, g, &activity));
    if installer {
        match &doc {
            Some((d, table)) => {
                body.push_str(&policy_section(lang, d, &id));
                body.push_str(&bindings_section(lang, d, &id));
                body.push_str(&tokens_section(
                    &ctx,
                    &req,
                    lang,
                    &Scope::Panel { room: id.clone() },
                    &format!("/rooms/{}/tokens", encode_component(&id)),
                    RoomsMsg::TokensTitle,
                    RoomsMsg::TokensHelp,
                ));
                body.push_str(&room_section(lang, d, table, &id));
            }
            None => {
                body.push_str(&tokens_section(
                    &ctx,
                    &req,
                    lang,
                    &Scope::Panel { room: id.clone() },
                    &format!("/rooms/{}/tokens", encode_component(&id)),
                    RoomsMsg::TokensTitle,
                    RoomsMsg::TokensHelp,
                ));
                body.push_str(&format!(
                    "<p class=\"hint\">{}</p>",
                    esc(lang.t(RoomsMsg::MemorySite))
                ));
            }
        }
    }
    page(lang, chosen, &r.name, &caller, &body)
}

fn same_local_day(time: &TimeFmt, a_ms: i64, b_ms: i64) -> bool {
    let (a, b) = (time.rfc3339(ts(a_ms)), time.rfc3339(ts(b_ms)));
    a.get(..10).is_some() && a.get(..10) == b.get(..10)
}

fn scenes_section(lang: Lang, doc: Option<&SiteDocument>, r: &RoomDto) -> String {
    let names = room_scenes(doc, r);
    let buttons: String = if names.is_empty() {
        format!("<p class=\"muted\">{}</p>", esc(lang.t(RoomsMsg::NoScenes)))
    } else {
        names
            .iter()
            .map(|n| {
                format!(
                    "<form method=\"post\" action=\"/rooms/{room}/scene\" class=\"inline\" \
                     data-result=\"scene-result\"><input type=\"hidden\" name=\"scene\" value=\"{n}\">\
                     <button type=\"submit\" class=\"secondary scene-button\">{n}</button></form> ",
                    room = esc(&encode_component(&r.id)),
                    n = esc(n),
                )
            })
            .collect()
    };
    format!(
        "<section class=\"scenes\"><h2>{title}</h2><p class=\"hint\">{help}</p>\
         <div class=\"scene-buttons\">{buttons}</div><pre id=\"scene-result\" class=\"result\"></pre></section>",
        title = esc(lang.t(RoomsMsg::ScenesTitle)),
        help = esc(lang.t(RoomsMsg::ScenesHelp)),
    )
}

fn bookings_section(
    lang: Lang,
    g: &GatewayHandle,
    r: &RoomDto,
    now_ms: i64,
    bookings: &[RoomBookingDto],
    caller: &Caller,
) -> String {
    let hm = |ms: i64| {
        let day = g.time.rfc3339(ts(ms));
        let today = g.time.rfc3339(ts(now_ms));
        if day.get(..10) == today.get(..10) {
            g.time.hh_mm(ts(ms))
        } else {
            format!("{} {}", day.get(5..10).unwrap_or(""), g.time.hh_mm(ts(ms)))
        }
    };
    let upcoming: Vec<&RoomBookingDto> = bookings
        .iter()
        .filter(|b| b.booking.end_ms > now_ms || same_local_day(&g.time, b.booking.end_ms, now_ms))
        .collect();
    let rows: String = if upcoming.is_empty() {
        format!(
            "<tr><td colspan=\"6\" class=\"muted\">{}</td></tr>",
            esc(lang.t(RoomsMsg::NoBookings))
        )
    } else {
        upcoming
            .iter()
            .map(|b| {
                let status = if b.finished_ms.is_some() {
                    lang.t(RoomsMsg::StatusFinished)
                } else if b.checked_in_ms.is_some() {
                    lang.t(Msg::CheckedIn)
                } else {
                    lang.t(RoomsMsg::StatusBooked)
                };
                let source = if b.source == "hub" {
                    lang.t(RoomsMsg::SourceHub)
                } else {
                    lang.t(RoomsMsg::SourceLocal)
                };
                let cancel = if b.finished_ms.is_none() && b.booking.end_ms > now_ms {
                    format!(
                        "<button class=\"danger\" data-post=\"/rooms/{room}/bookings/{id}/cancel\" \
                         data-confirm=\"{confirm}\">{label}</button>",
                        room = esc(&encode_component(&r.id)),
                        id = esc(&encode_component(&b.booking.id)),
                        confirm = esc(lang.t(RoomsMsg::CancelConfirm)),
                        label = esc(lang.t(RoomsMsg::CancelBooking)),
                    )
                } else {
                    String::new()
                };
                format!(
                    "<tr data-booking=\"{id}\"><td>{start}–{end}</td><td>{subject}</td><td>{organizer}</td>\
                     <td>{status}</td><td>{source}</td><td>{cancel}</td></tr>",
                    id = esc(&b.booking.id),
                    start = esc(&hm(b.booking.start_ms)),
                    end = esc(&hm(b.booking.end_ms)),
                    subject = esc(&b.booking.subject),
                    organizer = esc(&b.booking.organizer),
                    status = esc(status),
                    source = esc(source),
                )
            })
            .collect()
    };
    let now_local = g.time.rfc3339(ts(now_ms));
    let start_value = now_local.get(..16).unwrap_or("");
    let form = if r.kind == "closed" {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"/rooms/{room}/bookings\" id=\"add-booking\">\
             <div class=\"row\"><div>{subject}</div><div>{organizer}</div></div>\
             <div class=\"row\"><div>{start}</div><div>{end}</div><div>{minutes}</div></div>\
             <p class=\"hint\">{tz}</p><button type=\"submit\">{submit}</button>\
             <pre class=\"form-result\"></pre></form>",
            room = esc(&encode_component(&r.id)),
            subject = input(
                "subject",
                lang.t(RoomsMsg::Subject),
                "text",
                "",
                " maxlength=\"200\""
            ),
            organizer = input(
                "organizer",
                lang.t(RoomsMsg::Organizer),
                "text",
                &caller.who(),
                ""
            ),
            start = input(
                "start",
                lang.t(RoomsMsg::Start),
                "datetime-local",
                start_value,
                ""
            ),
            end = input("end", lang.t(RoomsMsg::End), "datetime-local", "", ""),
            minutes = input(
                "minutes",
                lang.t(RoomsMsg::MinutesField),
                "number",
                "",
                " min=\"1\" max=\"1440\""
            ),
            tz = esc(&lang.f(
                RoomsMsg::SiteTime,
                &[("tz", g.time.tz.iana_name().unwrap_or("UTC"))]
            )),
            submit = esc(lang.t(RoomsMsg::AddBooking)),
        )
    };
    format!(
        "<section class=\"bookings\"><h2>{title}</h2>\
         <table><thead><tr><th>{time}</th><th>{subject}</th><th>{organizer}</th><th>{status}</th>\
         <th>{source}</th><th></th></tr></thead><tbody>{rows}</tbody></table>{form}</section>",
        title = esc(lang.t(RoomsMsg::BookingsTitle)),
        time = esc(lang.t(RoomsMsg::When)),
        subject = esc(lang.t(RoomsMsg::Subject)),
        organizer = esc(lang.t(RoomsMsg::Organizer)),
        status = esc(lang.t(RoomsMsg::StatusCol)),
        source = esc(lang.t(RoomsMsg::SourceCol)),
    )
}

fn activity_section(lang: Lang, g: &GatewayHandle, activity: &[ActivityDto]) -> String {
    let rows: String = if activity.is_empty() {
        format!(
            "<tr><td colspan=\"3\" class=\"muted\">{}</td></tr>",
            esc(lang.t(RoomsMsg::NoActivity))
        )
    } else {
        activity
            .iter()
            .map(|a| {
                format!(
                    "<tr class=\"act-{kind}\"><td class=\"nowrap\">{at}</td><td>{kind}</td><td>{text}</td></tr>",
                    at = esc(&super::local_time(g, a.at_ms)),
                    kind = esc(&a.kind),
                    text = esc(&a.text),
                )
            })
            .collect()
    };
    format!(
        "<section class=\"activity\"><h2>{title}</h2><div class=\"scroll\"><table><thead><tr>\
         <th>{when}</th><th>{kind}</th><th>{what}</th></tr></thead><tbody>{rows}</tbody></table>\
         </div></section>",
        title = esc(lang.t(RoomsMsg::ActivityTitle)),
        when = esc(lang.t(RoomsMsg::When)),
        kind = esc(lang.t(RoomsMsg::KindCol)),
        what = esc(lang.t(RoomsMsg::What)),
    )
}

/// The value of a policy key in force for a room (for the hint under its field).
fn policy_in_force(p: &::scenes::Policy, key: &str) -> Option<String> {
    let span = |s: Span| s.to_string();
    Some(match key {
        "starting_soon" => span(p.starting_soon),
        "hvac_lead" => span(p.hvac_lead),
        "lights_lead" => span(p.lights_lead),
        "checkin_opens" => span(p.checkin_opens),
        "checkin_required" => p.checkin_required.to_string(),
        "checkin_on_presence" => p.checkin_on_presence.to_string(),
        "no_show_after" => span(p.no_show_after),
        "vacancy_release" => p.vacancy_release.map_or_else(|| "off".to_owned(), span),
        "dim_after" => span(p.dim_after),
        "dim_level" => format!("{} %", p.dim_level),
        "off_after" => span(p.off_after),
        "back_to_back_gap" => span(p.back_to_back_gap),
        "hvac_setpoint" => format!("{:.1} °C", p.hvac_setpoint_c),
        "hvac_mode" => format!("{:?}", p.hvac_mode).to_lowercase(),
        "closed_light" => format!("{:?}", p.closed_light).to_lowercase(),
        "override_hold" => span(p.override_hold),
        "walk_in_confirm" => span(p.walk_in_confirm),
        "checkin_by_card" => p.checkin_by_card.to_string(),
        "checkin_pin" => p.checkin_pin.to_string(),
        _ => return None,
    })
}

fn policy_section(lang: Lang, doc: &SiteDocument, room: &str) -> String {
    let form = edit::policy_form(doc, room).unwrap_or_default();
    let policy = doc.site().room(room).map(|r| &r.config.policy);
    let inherit = lang.t(RoomsMsg::Inherit).to_owned();
    let mut fields = String::new();
    for (key, how) in edit::policy_fields() {
        let value = form.get(key).map(String::as_str).unwrap_or("");
        let field = match how {
            FieldInput::Text | FieldInput::Number => input(key, key, "text", value, ""),
            FieldInput::YesNo => {
                let options: Vec<(String, String)> =
                    [("", inherit.as_str()), ("true", "true"), ("false", "false")]
                        .iter()
                        .map(|(v, t)| ((*v).to_owned(), (*t).to_owned()))
                        .collect();
                select(key, key, &options, value)
            }
            FieldInput::Choice(choices) => {
                let options: Vec<(String, String)> =
                    std::iter::once((String::new(), inherit.clone()))
                        .chain(choices.iter().map(|c| ((*c).to_owned(), (*c).to_owned())))
                        .collect();
                select(key, key, &options, value)
            }
        };
        let hint = policy
            .and_then(|p| policy_in_force(p, key))
            .map(|v| {
                format!(
                    "<small class=\"hint\">{}</small>",
                    esc(&lang.f(RoomsMsg::InForce, &[("value", &v)]))
                )
            })
            .unwrap_or_default();
        fields.push_str(&format!("<div>{field}{hint}</div>"));
    }
    format!(
        "<section class=\"policy\"><h2>{title}</h2><p class=\"hint\">{help}</p>\
         <form method=\"post\" action=\"/rooms/{room}/policy\" id=\"policy\"><div class=\"fields\">{fields}</div>\
         <button type=\"submit\">{save}</button></form></section>",
        title = esc(lang.t(RoomsMsg::PolicyTitle)),
        help = esc(lang.t(RoomsMsg::PolicyHelp)),
        room = esc(&encode_component(room)),
        save = esc(lang.t(RoomsMsg::Save)),
    )
}

fn bindings_section(lang: Lang, doc: &SiteDocument, room: &str) -> String {
    let current = edit::bindings_form(doc, room).unwrap_or_default();
    let unbound = lang.t(RoomsMsg::Unbound).to_owned();
    let mut fields = String::new();
    for cap in Capability::ALL {
        let key = cap.key();
        let options: Vec<(String, String)> = std::iter::once((String::new(), unbound.clone()))
            .chain(
                edit::binding_choices(doc.site(), cap)
                    .into_iter()
                    .map(|c| (c.point.to_string(), format!("{} ({})", c.label, c.point))),
            )
            .collect();
        let value = current.get(key).map(String::as_str).unwrap_or("");
        fields.push_str(&format!("<div>{}</div>", select(key, key, &options, value)));
    }
    format!(
        "<section class=\"bindings\"><h2>{title}</h2><p class=\"hint\">{help}</p>\
         <form method=\"post\" action=\"/rooms/{room}/bindings\" id=\"bindings\"><div class=\"fields\">{fields}</div>\
         <button type=\"submit\">{save}</button></form></section>",
        title = esc(lang.t(RoomsMsg::BindingsTitle)),
        help = esc(lang.t(RoomsMsg::BindingsHelp)),
        room = esc(&encode_component(room)),
        save = esc(lang.t(RoomsMsg::Save)),
    )
}

fn room_section(lang: Lang, doc: &SiteDocument, table: &toml::Table, room: &str) -> String {
    let form = edit::room_form(doc, room).unwrap_or_default();
    let v = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let default = lang.t(RoomsMsg::DefaultChoice).to_owned();
    let mut scene_options: Vec<(String, String)> = vec![(String::new(), default)];
    let mut names = scene_names(table);
    for builtin in ["meeting", "leave"] {
        if !names.iter().any(|n| n == builtin) {
            names.push(builtin.to_owned());
        }
    }
    scene_options.extend(names.iter().map(|n| (n.clone(), n.clone())));
    let scene = |key: &str, label: RoomsMsg| select(key, lang.t(label), &scene_options, v(key));
    format!(
        "<section class=\"room-settings\"><h2>{title}</h2>\
         <form method=\"post\" action=\"/rooms/{href}\" id=\"room-form\"><div class=\"fields\">\
         <div>{id}</div><div>{name}</div><div>{kind}</div><div>{capacity}</div><div>{template}</div>\
         <div>{meeting}</div><div>{leave}</div><div>{walk_in}</div><div>{scenes}</div>\
         <div>{groups}</div><div>{unlock}</div></div>\
         <button type=\"submit\">{save}</button></form>\
         <button class=\"danger\" data-post=\"/rooms/{href}/remove\" data-confirm=\"{confirm}\" \
         data-result=\"remove-result\">{remove}</button><pre id=\"remove-result\" class=\"result\"></pre></section>",
        title = esc(lang.t(RoomsMsg::RoomTitle)),
        href = esc(&encode_component(room)),
        id = input("id", lang.t(RoomsMsg::RoomId), "text", v("id"), " required"),
        name = input(
            "name",
            lang.t(RoomsMsg::RoomName),
            "text",
            v("name"),
            " required"
        ),
        kind = select(
            "kind",
            lang.t(RoomsMsg::RoomKind),
            &kind_options(lang),
            v("kind")
        ),
        capacity = input(
            "capacity",
            lang.t(RoomsMsg::Capacity),
            "number",
            v("capacity"),
            " min=\"0\""
        ),
        template = input(
            "template",
            lang.t(RoomsMsg::Template),
            "text",
            v("template"),
            ""
        ),
        meeting = scene("meeting_scene", RoomsMsg::MeetingScene),
        leave = scene("leave_scene", RoomsMsg::LeaveScene),
        walk_in = scene("walk_in_scene", RoomsMsg::WalkInScene),
        scenes = input(
            "scenes",
            lang.t(RoomsMsg::OfferedScenes),
            "text",
            v("scenes"),
            ""
        ),
        groups = input(
            "access.staff_groups",
            lang.t(RoomsMsg::StaffGroups),
            "text",
            v("access.staff_groups"),
            ""
        ),
        unlock = input(
            "access.unlock_for",
            lang.t(RoomsMsg::UnlockFor),
            "text",
            v("access.unlock_for"),
            ""
        ),
        save = esc(lang.t(RoomsMsg::Save)),
        confirm = esc(lang.t(RoomsMsg::RemoveConfirm)),
        remove = esc(lang.t(RoomsMsg::RemoveRoom)),
    )
}

// ---------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------

/// Runs `scene` in `room` for `caller` (audited) and answers with what it sent at once.
pub(crate) async fn run_scene(
    ctx: &PageCtx,
    caller: &Caller,
    req: &RequestInfo,
    lang: Lang,
    room: &str,
    scene: &str,
) -> Response {
    let g = &ctx.gateway;
    let Some(name) = g
        .snapshot()
        .rooms
        .iter()
        .find(|r| r.id == room)
        .map(|r| r.name.clone())
    else {
        return not_found(lang, room);
    };
    let before = g.clock.now().as_millis();
    if let Err(e) = timed(g.run_scene(room, scene, &caller.who())).await {
        return api_refusal(&e);
    }
    ctx.console.audit(
        caller,
        &req.from(),
        "scene.run",
        &format!("{room}/{scene}"),
        "",
    );
    let _ = timed(g.settle()).await;
    let sent: Vec<String> = timed(g.activity(room, 50))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.at_ms >= before && a.kind == "command")
        .rev()
        .map(|a| format!("  {} {}", a.at, a.text))
        .collect();
    let mut text = lang.f(RoomsMsg::SceneRan, &[("scene", scene), ("room", &name)]);
    if sent.is_empty() {
        text.push('\n');
        text.push_str(lang.t(RoomsMsg::NoCommands));
    } else {
        text.push('\n');
        text.push_str(lang.t(RoomsMsg::CommandsSent));
        for line in sent {
            text.push('\n');
            text.push_str(&line);
        }
    }
    text.push('\n');
    text.push_str(lang.t(RoomsMsg::LaterSteps));
    form_done(&text)
}

/// A local booking from the room page's form: `subject`, `organizer`, `start` and `end`
/// (the site's wall clock, `2026-03-02T09:00`, or RFC 3339), or `minutes` from `start` (from
/// now when `start` is empty). Errors by field, in `lang`.
pub(crate) fn booking_from_form(
    lang: Lang,
    time: &TimeFmt,
    now: Timestamp,
    room: &str,
    who: &str,
    form: &Form,
) -> Result<BookingRequest, Vec<(String, String)>> {
    let get = |k: &str| form.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    let mut err = |field: &str, msg: String| errors.push((field.to_owned(), msg));
    let parse = |field: &str, v: &str, errs: &mut dyn FnMut(&str, String)| match time.parse(v) {
        Ok(t) => Some(t),
        Err(_) => {
            errs(field, lang.f(RoomsMsg::BadTime, &[("value", v)]));
            None
        }
    };
    let subject = get("subject").unwrap_or("Booking").to_owned();
    if subject.chars().count() > 200 {
        err("subject", lang.t(RoomsMsg::SubjectTooLong).to_owned());
    }
    let organizer = get("organizer").unwrap_or(who).to_owned();
    if organizer.chars().count() > 200 {
        err("organizer", lang.t(RoomsMsg::SubjectTooLong).to_owned());
    }
    let minutes = match get("minutes") {
        None => None,
        Some(m) => match m.parse::<i64>() {
            Ok(n) if (1..=1440).contains(&n) => Some(n),
            _ => {
                err("minutes", lang.t(RoomsMsg::BadMinutes).to_owned());
                None
            }
        },
    };
    let start = match get("start") {
        Some(s) => parse("start", s, &mut err),
        None if get("minutes").is_some() => Some(now),
        None => {
            err("start", lang.t(RoomsMsg::NeedStart).to_owned());
            None
        }
    };
    let end = match (get("end"), get("minutes")) {
        (Some(_), Some(_)) => {
            err("minutes", lang.t(RoomsMsg::EndOrMinutes).to_owned());
            None
        }
        (Some(e), None) => parse("end", e, &mut err),
        (None, Some(_)) => match (start, minutes) {
            (Some(s), Some(m)) => Some(s + Span::minutes(m)),
            _ => None,
        },
        (None, None) => {
            err("end", lang.t(RoomsMsg::NeedEnd).to_owned());
            None
        }
    };
    match (start, end) {
        (Some(start), Some(end)) if errors.is_empty() => Ok(BookingRequest {
            room: room.to_owned(),
            subject,
            organizer,
            start,
            end,
            attendees: Vec::new(),
        }),
        _ => Err(errors),
    }
}

async fn add_booking(
    ctx: &PageCtx,
    caller: &Caller,
    req: &RequestInfo,
    lang: Lang,
    room: &str,
    form: &Form,
) -> Response {
    let g = &ctx.gateway;
    let b = match booking_from_form(lang, &g.time, g.clock.now(), room, &caller.who(), form) {
        Ok(b) => b,
        Err(errors) => return form_errors(&errors, None),
    };
    match timed(g.add_booking(b)).await {
        Ok(dto) => {
            ctx.console.audit(
                caller,
                &req.from(),
                "booking.add",
                room,
                &format!("{} {}–{} '{}'", dto.id, dto.start, dto.end, dto.subject),
            );
            form_go("reload")
        }
        Err(ApiError::Unavailable(_)) => form_errors(&[], Some(lang.t(RoomsMsg::Busy))),
        Err(e) => api_refusal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BookingDto, PointDto};

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).expect("tzdb")
    }

    fn at(tz: &TimeZone, civil: &str) -> i64 {
        let dt: jiff::civil::DateTime = civil.parse().expect("civil time");
        dt.to_zoned(tz.clone())
            .expect("zoned")
            .timestamp()
            .as_millisecond()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_plain_day_spans_the_opening_hours() {
        let utc = tz("UTC");
        let now = at(&utc, "2026-03-02T10:00");
        let booking = (at(&utc, "2026-03-02T09:00"), at(&utc, "2026-03-02T10:00"));
        let day = day_window(&utc, now, &[booking]);
        assert_eq!(day.start_ms, at(&utc, "2026-03-02T07:00"));
        assert_eq!(day.end_ms, at(&utc, "2026-03-02T20:00"));
        let (left, width) = day.bar(booking.0, booking.1).expect("on the day");
        assert!(
            close(left, 200.0 / 13.0) && close(width, 100.0 / 13.0),
            "{left} {width}"
        );
        assert!(close(day.pct(now), 300.0 / 13.0));
        let ticks = hour_ticks(&utc, &day);
        assert_eq!(ticks.len(), 14);
        assert_eq!(ticks[0], (0.0, "07:00".to_owned()));
        assert_eq!(ticks[13], (100.0, "20:00".to_owned()));
        // Early and late use widen the window to whole hours; a booking past midnight is cut.
        let early = (at(&utc, "2026-03-02T05:30"), at(&utc, "2026-03-02T06:00"));
        let late = (at(&utc, "2026-03-02T22:10"), at(&utc, "2026-03-03T01:00"));
        let day = day_window(&utc, now, &[early, late]);
        assert_eq!(day.start_ms, at(&utc, "2026-03-02T05:00"));
        assert_eq!(day.end_ms, at(&utc, "2026-03-03T00:00"));
        let (left, width) = day.bar(late.0, late.1).expect("on the day");
        assert!(close(left + width, 100.0));
        // Yesterday's booking is not on today's line.
        let yesterday = (at(&utc, "2026-03-01T09:00"), at(&utc, "2026-03-01T10:00"));
        assert_eq!(
            day_window(&utc, now, &[yesterday]).start_ms,
            at(&utc, "2026-03-02T07:00")
        );
        assert!(day.bar(yesterday.0, yesterday.1).is_none());
    }

    #[test]
    fn a_daylight_saving_day_is_placed_by_the_instant() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST, so 01:00–04:00 is two hours.
        let berlin = tz("Europe/Berlin");
        let now = at(&berlin, "2026-03-29T10:00");
        let booking = (
            at(&berlin, "2026-03-29T01:00"),
            at(&berlin, "2026-03-29T04:00"),
        );
        assert_eq!(booking.1 - booking.0, 2 * HOUR_MS);
        let day = day_window(&berlin, now, &[booking]);
        assert_eq!(day.start_ms, booking.0);
        assert_eq!(day.end_ms, at(&berlin, "2026-03-29T20:00"));
        assert_eq!(
            day.end_ms - day.start_ms,
            18 * HOUR_MS,
            "19 wall-clock hours, 18 real"
        );
        let (left, width) = day.bar(booking.0, booking.1).expect("on the day");
        assert!(
            close(left, 0.0) && close(width, 200.0 / 18.0),
            "{left} {width}"
        );
        let labels: Vec<String> = hour_ticks(&berlin, &day)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            &labels[..3],
            ["01:00", "03:00", "04:00"],
            "02:00 does not exist"
        );
        assert_eq!(labels.last().map(String::as_str), Some("20:00"));
        assert_eq!(labels.len(), 19);
        // The same wall-clock times in UTC are three hours of nineteen.
        let utc = tz("UTC");
        let b = (at(&utc, "2026-03-29T01:00"), at(&utc, "2026-03-29T04:00"));
        let day = day_window(&utc, at(&utc, "2026-03-29T10:00"), &[b]);
        let (_, width) = day.bar(b.0, b.1).expect("on the day");
        assert!(close(width, 300.0 / 19.0));
        // The autumn change: the day to midnight holds 25 hours.
        let autumn = day_window(
            &berlin,
            at(&berlin, "2026-10-25T12:00"),
            &[(
                at(&berlin, "2026-10-25T00:30"),
                at(&berlin, "2026-10-25T23:30"),
            )],
        );
        assert_eq!(autumn.end_ms - autumn.start_ms, 25 * HOUR_MS);
    }

    fn room(name: &str, subject: &str) -> RoomDto {
        RoomDto {
            id: "r<1>".into(),
            name: name.into(),
            kind: "bookable",
            capacity: 4,
            state: "in_meeting",
            occupancy: "unknown",
            current: Some(BookingDto {
                id: "b1".into(),
                room: "r<1>".into(),
                subject: subject.into(),
                organizer: "Ana \"A\" & Bo".into(),
                start: String::new(),
                end: String::new(),
                start_ms: 9 * HOUR_MS,
                end_ms: 10 * HOUR_MS,
                checked_in: true,
            }),
            next: None,
            points: vec![
                PointDto {
                    capability: "light",
                    point: "lights/r1".into(),
                    value: serde_json::Value::Bool(true),
                    label: None,
                    unit: None,
                },
                PointDto {
                    capability: "occupancy",
                    point: "pir/r1".into(),
                    value: serde_json::Value::Null,
                    label: None,
                    unit: None,
                },
            ],
            scenes: Vec::new(),
            activity: Vec::new(),
        }
    }

    fn device(id: &str, name: &str, state: &'static str) -> DeviceDto {
        DeviceDto {
            id: id.into(),
            name: name.into(),
            address: String::new(),
            state,
            last_error: None,
            requests: 0,
            timeouts: 0,
            exceptions: 0,
            transport_errors: 0,
            responses: 0,
            bad_frames: 0,
            points: Vec::new(),
        }
    }

    #[test]
    fn cards_escape_what_the_site_and_bookings_say() {
        let time = TimeFmt { tz: tz("UTC") };
        let r = room("<script>alert(1)</script>", "<img src=x onerror=y>");
        let devices = [
            device("lights", "Lights <A>", "online"),
            device("pir", "PIR", "offline"),
        ];
        let html = room_card(Lang::En, &time, &r, &devices);
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=y&gt;"));
        assert!(html.contains("by Ana &quot;A&quot; &amp; Bo"));
        assert!(html.contains("id=\"room-r&lt;1&gt;\""));
        assert!(html.contains("href=\"/rooms/r%3C1%3E\""));
        assert!(html.contains("09:00–10:00"));
        assert!(html.contains("Devices 1/2 online"));
        assert!(html.contains("<span class=\"chip\">PIR offline</span>"));
        // No "no value" chip for a sensor whose device is offline: the device says it.
        assert!(!html.contains("occupancy: no value"));
        let zh = room_card(Lang::ZhCn, &time, &r, &devices);
        assert!(zh.contains("会议中") && zh.contains("PIR 离线"), "{zh}");
    }

    #[test]
    fn timelines_escape_and_mark_walk_ins_and_releases() {
        let time = TimeFmt { tz: tz("UTC") };
        let day0 = at(&tz("UTC"), "2026-03-02T00:00");
        let booking = RoomBookingDto {
            booking: BookingDto {
                id: "b\"1".into(),
                room: "r1".into(),
                subject: "<b>Plan</b>".into(),
                organizer: "Ana".into(),
                start: String::new(),
                end: String::new(),
                start_ms: day0 + 9 * HOUR_MS,
                end_ms: day0 + 10 * HOUR_MS,
                checked_in: true,
            },
            source: "local",
            checked_in_ms: Some(day0 + 9 * HOUR_MS + 300_000),
            finished_ms: None,
        };
        let act = |h: i64, text: &str| ActivityDto {
            at: String::new(),
            at_ms: day0 + h * HOUR_MS,
            kind: "outcome".into(),
            text: text.into(),
        };
        // Newest first, as the gateway gives them.
        let activity = [
            act(15, "released as a no-show [b2]: nobody checked in by 14:10"),
            act(12, "walk-in ended: the room is empty"),
            act(11, "walk-in started: someone came in"),
        ];
        let html = timeline(Lang::En, &time, day0 + 13 * HOUR_MS, &[booking], &activity);
        assert!(
            html.contains("&lt;b&gt;Plan&lt;/b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("data-booking=\"b&quot;1\""));
        assert!(html.contains("tl-block tl-booking checked"));
        assert!(html.contains("class=\"tl-mark checkin\""));
        // 07:00–20:00: the walk-in 11:00–12:00 is at 4/13.
        assert!(
            html.contains(&format!(
                "tl-block tl-walkin\" style=\"left:{:.3}%;width:{:.3}%\"",
                400.0 / 13.0,
                100.0 / 13.0
            )),
            "{html}"
        );
        assert!(html.contains(&format!(
            "tl-mark release\" style=\"left:{:.3}%\"",
            800.0 / 13.0
        )));
        assert!(html.contains(&format!("tl-now\" style=\"left:{:.3}%\"", 600.0 / 13.0)));
    }

    #[test]
    fn booking_forms_give_errors_by_field() {
        let time = TimeFmt {
            tz: tz("Europe/Berlin"),
        };
        let now = Timestamp::from_millis(at(&time.tz, "2026-03-02T08:00"));
        let form = |pairs: &[(&str, &str)]| -> Form {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let b = booking_from_form(
            Lang::En,
            &time,
            now,
            "r1",
            "olga",
            &form(&[
                ("subject", "Plan"),
                ("start", "2026-03-02T09:00"),
                ("end", "2026-03-02T10:00"),
            ]),
        )
        .expect("valid");
        assert_eq!(b.start.as_millis(), at(&time.tz, "2026-03-02T09:00"));
        assert_eq!((b.subject.as_str(), b.organizer.as_str()), ("Plan", "olga"));
        let b = booking_from_form(
            Lang::En,
            &time,
            now,
            "r1",
            "olga",
            &form(&[("minutes", "30")]),
        )
        .expect("minutes from now");
        assert_eq!(b.start, now);
        assert_eq!(b.end, now + Span::minutes(30));
        let e = booking_from_form(
            Lang::En,
            &time,
            now,
            "r1",
            "olga",
            &form(&[("start", "tomorrow"), ("minutes", "0")]),
        )
        .expect_err("bad");
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["minutes", "start"]);
        let e = booking_from_form(
            Lang::ZhCn,
            &time,
            now,
            "r1",
            "olga",
            &form(&[("start", "2026-03-02T09:00")]),
        )
        .expect_err("no end");
        assert_eq!(e, [("end".to_owned(), "请填写结束时间或分钟数".to_owned())]);
    }

    #[test]
    fn every_text_has_both_languages() {
        for m in RoomsMsg::ALL {
            let (en, zh) = crate::i18n::Texts::texts(*m);
            assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
        }
    }
}
