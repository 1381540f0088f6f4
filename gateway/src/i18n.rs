//! The message catalog of the door panels and the lobby display (en, zh-CN), and the choice of
//! a page's language from `?lang=`, a cookie or `Accept-Language`.
//!
//! Every message is one `catalog!` entry with both texts, so a missing translation does not
//! compile; the unit tests check that both texts of a message use the same `{placeholders}`.

use std::fmt;

/// A language the pages speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    /// Simplified Chinese, as used in mainland China.
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag (`en`, `zh-CN`), as in `?lang=`, the cookie and `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the switch (never translated).
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "中文",
        }
    }

    /// A tag we speak, or `None`: any `en-*` is English, any `zh-*` is Chinese (simplified is
    /// the only Chinese we have, and closer for a `zh-TW` reader than English).
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The page's language: `?lang=` wins (a tap on the switch), then the `lang` cookie (the
    /// tablet remembers), then the browser's `Accept-Language` by its q-values, else English.
    pub fn choose(query: Option<&str>, cookie: Option<&str>, accept: Option<&str>) -> Lang {
        query
            .and_then(Lang::from_tag)
            .or_else(|| cookie.and_then(Lang::from_tag))
            .or_else(|| accept.and_then(Lang::from_accept_language))
            .unwrap_or_default()
    }

    /// The best language of an `Accept-Language` header (RFC 9110 §12.5.4) that we speak.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
            let (Some(q), Some(lang)) = (q, Lang::from_tag(tag)) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    /// The text of `msg` in this language.
    pub fn t(self, msg: impl Texts) -> &'static str {
        let (en, zh) = msg.texts();
        match self {
            Lang::En => en,
            Lang::ZhCn => zh,
        }
    }

    /// The text of `msg` with its `{name}` placeholders filled from `args`.
    pub fn f(self, msg: impl Texts, args: &[(&str, &str)]) -> String {
        fill(self.t(msg), args)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// Replaces each `{name}` of `text` with its value from `args`; unknown names stay as they are.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match args.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Texts in every language the pages speak: implemented by each catalog's message enum.
pub trait Texts: Copy {
    /// (English, Simplified Chinese).
    fn texts(self) -> (&'static str, &'static str);
}

/// Declares a message catalog: `catalog!(Name; Variant => "English", "中文"; ...)` makes the
/// enum `Name` with `Name::ALL` and its [`Texts`]. Each page module may keep its own.
macro_rules! catalog {
    ($name:ident; $( $variant:ident => $en:literal, $zh:literal; )*) => {
        /// Messages of the pages, with their text in every language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $variant, )* }

        impl $name {
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];
        }

        impl $crate::i18n::Texts for $name {
            fn texts(self) -> (&'static str, &'static str) {
                match self { $( $name::$variant => ($en, $zh), )* }
            }
        }
    };
}
pub(crate) use catalog;

catalog! {
    Msg;
    // Room states, as a door sign shows them (PRODUCT.md).
    StateFree => "Free", "空闲";
    StateStartingSoon => "Starting soon", "即将开始";
    StateInMeeting => "In meeting", "会议中";
    StateOccupied => "Occupied", "有人使用";
    StateClosed => "Closed", "已关闭";
    // What the state means right now.
    FreeUntil => "Free until {time}", "空闲至 {time}";
    FreeNoBooking => "Free, nothing booked", "空闲，暂无预订";
    StartsAt => "Next meeting at {time}", "下一场会议 {time} 开始";
    BusyUntil => "Busy until {time}", "使用至 {time}";
    OccupiedWalkIn => "In use without a booking", "无预订使用中";
    ClosedNotBookable => "Not available for booking", "暂停预订";
    // Meetings.
    Now => "Now", "当前会议";
    Next => "Next", "下一场";
    NothingNext => "Nothing else booked", "之后暂无预订";
    NoMeeting => "No meeting now", "当前没有会议";
    ByOrganizer => "by {name}", "预订人：{name}";
    CheckedIn => "Checked in", "已签到";
    CheckInBy => "Check in by {time}", "请在 {time} 前签到";
    Seats => "{n} seats", "{n} 人";
    OneSeat => "1 seat", "1 人";
    // Buttons.
    CheckIn => "Check in", "签到";
    BookNow => "Book now", "立即预订";
    Minutes => "{n} min", "{n} 分钟";
    PlusMinutes => "+{n} min", "+{n} 分钟";
    Extend => "Extend", "延长";
    EndMeeting => "End meeting", "结束会议";
    EndMeetingConfirm => "End the meeting now? The room becomes free.", "确定现在结束会议吗？会议室将变为空闲。";
    Cancel => "Cancel", "取消";
    Ok => "OK", "确定";
    Clear => "Clear", "清除";
    EnterPin => "Enter the booking's PIN", "请输入预订签到码";
    Working => "One moment…", "请稍候…";
    // The server's answers to panel actions.
    DoneCheckedIn => "Checked in. Enjoy your meeting.", "签到成功，祝会议顺利。";
    DoneBooked => "Booked until {time}. Checked in.", "已预订至 {time}，并已签到。";
    DoneExtended => "Extended until {time}", "已延长至 {time}";
    DoneEnded => "Meeting ended. The room is free again.", "会议已结束，会议室已空闲。";
    RefusedCheckIn => "Check-in is not possible now", "现在无法签到";
    RefusedExtend => "The meeting cannot be extended", "无法延长会议";
    RefusedBooking => "The room cannot be booked", "无法预订此会议室";
    RefusedEnd => "There is no meeting to end", "当前没有可结束的会议";
    BookedBetween => "The room is booked from {start} to {end}", "该会议室 {start}–{end} 已被预订";
    WrongPin => "Wrong PIN", "签到码错误";
    PinLocked => "Too many wrong PINs. Try again at {time}.", "签到码错误次数过多，请于 {time} 后重试。";
    PinNeeded => "This room asks for the booking's PIN", "此会议室需要输入预订签到码";
    Unreachable => "The room system cannot be reached. Trying again…", "无法连接会议室系统，正在重试…";
    WalkInSubject => "Walk-in meeting", "临时会议";
    // The lobby display.
    FloorTitle => "Meeting rooms", "会议室";
    RoomsFree => "{free} of {total} rooms free", "{total} 间会议室中 {free} 间空闲";
    NoSuchRoom => "There is no room '{room}' on this floor", "本层没有会议室“{room}”";
    DateLine => "{weekday}, {month} {day}", "{month}{day}日 {weekday}";
    Monday => "Monday", "星期一";
    Tuesday => "Tuesday", "星期二";
    Wednesday => "Wednesday", "星期三";
    Thursday => "Thursday", "星期四";
    Friday => "Friday", "星期五";
    Saturday => "Saturday", "星期六";
    Sunday => "Sunday", "星期日";
    January => "January", "1月";
    February => "February", "2月";
    March => "March", "3月";
    April => "April", "4月";
    May => "May", "5月";
    June => "June", "6月";
    July => "July", "7月";
    August => "August", "8月";
    September => "September", "9月";
    October => "October", "10月";
    November => "November", "11月";
    December => "December", "12月";
}

impl Msg {
    /// The label of a room state (`RoomDto::state`); `None` for a state we do not know.
    pub fn for_state(state: &str) -> Option<Msg> {
        Some(match state {
            "free" => Msg::StateFree,
            "starting_soon" => Msg::StateStartingSoon,
            "in_meeting" => Msg::StateInMeeting,
            "occupied" => Msg::StateOccupied,
            "closed" => Msg::StateClosed,
            _ => return None,
        })
    }

    /// A weekday, Monday = 1 … Sunday = 7 (ISO 8601).
    pub fn weekday(n: i8) -> Msg {
        [
            Msg::Monday,
            Msg::Tuesday,
            Msg::Wednesday,
            Msg::Thursday,
            Msg::Friday,
            Msg::Saturday,
            Msg::Sunday,
        ][usize::try_from(n - 1).unwrap_or(0).min(6)]
    }

    /// A month, January = 1.
    pub fn month(n: i8) -> Msg {
        [
            Msg::January,
            Msg::February,
            Msg::March,
            Msg::April,
            Msg::May,
            Msg::June,
            Msg::July,
            Msg::August,
            Msg::September,
            Msg::October,
            Msg::November,
            Msg::December,
        ][usize::try_from(n - 1).unwrap_or(0).min(11)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn placeholders(text: &str) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            out.insert(&after[..close]);
            rest = &after[close + 1..];
        }
        out
    }

    #[test]
    fn every_message_has_both_texts_with_the_same_placeholders() {
        for msg in Msg::ALL {
            let (en, zh) = msg.texts();
            assert!(!en.trim().is_empty(), "{msg:?} has no English text");
            assert!(!zh.trim().is_empty(), "{msg:?} has no Chinese text");
            assert_eq!(
                placeholders(en),
                placeholders(zh),
                "{msg:?}: the two texts fill different placeholders"
            );
            for (lang, text) in [("en", en), ("zh-CN", zh)] {
                assert_eq!(
                    text.matches('{').count(),
                    text.matches('}').count(),
                    "{msg:?} ({lang}): unbalanced braces in {text:?}"
                );
            }
        }
    }

    #[test]
    fn chinese_texts_are_chinese_and_english_texts_are_not() {
        let han = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        for msg in Msg::ALL {
            let (en, zh) = msg.texts();
            assert!(!han(en), "{msg:?}: Chinese in the English text {en:?}");
            // Month names are digits and 月, which is Han too; every text has at least one.
            assert!(
                han(zh),
                "{msg:?}: the Chinese text {zh:?} is not translated"
            );
        }
    }

    #[test]
    fn every_room_state_has_a_label() {
        for state in ["free", "starting_soon", "in_meeting", "occupied", "closed"] {
            let msg = Msg::for_state(state).expect("a label");
            assert_ne!(Lang::En.t(msg), Lang::ZhCn.t(msg));
        }
        assert_eq!(Msg::for_state("on_fire"), None);
        assert_eq!(Lang::ZhCn.t(Msg::StateInMeeting), "会议中");
        assert_eq!(Lang::ZhCn.t(Msg::StateFree), "空闲");
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            Lang::En.f(Msg::BookedBetween, &[("start", "09:00"), ("end", "10:00")]),
            "The room is booked from 09:00 to 10:00"
        );
        assert_eq!(
            Lang::ZhCn.f(Msg::RoomsFree, &[("free", "3"), ("total", "5")]),
            "5 间会议室中 3 间空闲"
        );
        assert_eq!(fill("{a} and {b", &[("a", "x")]), "x and {b");
        assert_eq!(fill("{unknown}!", &[]), "{unknown}!");
    }

    #[test]
    fn the_query_wins_then_the_cookie_then_the_browser() {
        let zh_browser = Some("zh-CN,zh;q=0.9,en;q=0.8");
        assert_eq!(Lang::choose(None, None, None), Lang::En);
        assert_eq!(Lang::choose(None, None, zh_browser), Lang::ZhCn);
        assert_eq!(Lang::choose(None, Some("en"), zh_browser), Lang::En);
        assert_eq!(Lang::choose(Some("zh-CN"), Some("en"), None), Lang::ZhCn);
        assert_eq!(
            Lang::choose(Some("en"), Some("zh-CN"), zh_browser),
            Lang::En
        );
        // Something we do not speak falls through to the next source.
        assert_eq!(Lang::choose(Some("fr"), Some("zh-cn"), None), Lang::ZhCn);
        assert_eq!(
            Lang::choose(Some("klingon"), None, Some("fr, de")),
            Lang::En
        );
    }

    #[test]
    fn accept_language_follows_q_values() {
        assert_eq!(
            Lang::from_accept_language("fr-FR, en;q=0.5, zh;q=0.7"),
            Some(Lang::ZhCn)
        );
        assert_eq!(
            Lang::from_accept_language("zh-TW;q=0.2, en-GB;q=0.9"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("zh_Hans"), Some(Lang::ZhCn));
        assert_eq!(Lang::from_accept_language("en;q=0, zh;q=bad"), None);
        assert_eq!(Lang::from_accept_language(""), None);
        for lang in Lang::ALL {
            assert_eq!(Lang::from_tag(lang.tag()), Some(lang));
        }
    }

    #[test]
    fn dates_read_naturally() {
        let en = Lang::En.f(
            Msg::DateLine,
            &[
                ("weekday", Lang::En.t(Msg::weekday(1))),
                ("month", Lang::En.t(Msg::month(3))),
                ("day", "2"),
            ],
        );
        assert_eq!(en, "Monday, March 2");
        let zh = Lang::ZhCn.f(
            Msg::DateLine,
            &[
                ("weekday", Lang::ZhCn.t(Msg::weekday(1))),
                ("month", Lang::ZhCn.t(Msg::month(3))),
                ("day", "2"),
            ],
        );
        assert_eq!(zh, "3月2日 星期一");
        assert_eq!(Msg::weekday(7), Msg::Sunday);
        assert_eq!(Msg::month(12), Msg::December);
    }
}
