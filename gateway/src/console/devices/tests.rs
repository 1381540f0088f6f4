//! Unit tests of the device pages' pure parts: conditions, values, forms.

use super::*;
use crate::i18n::Texts;

fn device(id: &str, state: &'static str, timeouts: u64) -> DeviceDto {
    DeviceDto {
        id: id.into(),
        name: id.into(),
        address: "127.0.0.1:502 unit 1".into(),
        state,
        last_error: None,
        requests: 10,
        responses: 10 - timeouts,
        timeouts,
        exceptions: 0,
        transport_errors: 0,
        bad_frames: 0,
        points: Vec::new(),
    }
}

#[test]
fn an_online_device_that_keeps_failing_is_degraded_for_a_window() {
    let t0 = Instant::now();
    let mut window = FailureWindow::default();
    window.observe(t0, &[device("a", "online", 0)]);
    assert_eq!(window.condition(&device("a", "online", 0)), "online");
    // A timeout since the baseline: degraded.
    let failing = device("a", "online", 1);
    window.observe(t0 + Duration::from_secs(2), std::slice::from_ref(&failing));
    assert_eq!(window.condition(&failing), "degraded");
    // Still within the window of the failure.
    window.observe(t0 + Duration::from_secs(8), std::slice::from_ref(&failing));
    assert_eq!(window.condition(&failing), "degraded");
    // No failure for a whole window: online again.
    window.observe(t0 + Duration::from_secs(13), std::slice::from_ref(&failing));
    assert_eq!(window.condition(&failing), "online");
    // Other states pass through; a device not sampled yet is not degraded.
    assert_eq!(window.condition(&device("a", "offline", 5)), "offline");
    assert_eq!(window.condition(&device("b", "online", 5)), "online");
    assert!(window.samples.len() <= 3, "{:?}", window.samples);
}

#[test]
fn values_read_as_people_write_them() {
    assert_eq!(value_text(&serde_json::Value::Null, None, Some("%")), "—");
    assert_eq!(value_text(&serde_json::json!(55), None, Some("%")), "55 %");
    assert_eq!(
        value_text(&serde_json::json!(2), Some("cool"), None),
        "2 (cool)"
    );
    assert_eq!(value_text(&serde_json::json!(true), None, Some("")), "true");
}

#[test]
fn the_device_form_shows_the_fields_of_its_protocol() {
    let mut form = Form::new();
    form.insert("id".into(), "a\"<b".into());
    form.insert("protocol".into(), "bacnet".into());
    form.insert("instance".into(), "4242".into());
    let html = device_form_html(Lang::En, "/devices/x", &form, &[], DevMsg::Save);
    assert!(html.contains("value=\"a&quot;&lt;b\""), "{html}");
    assert!(
        html.contains(&format!(
            "<fieldset class=\"pf\" data-protocols=\"bacnet\" style=\"{PF_STYLE}\">"
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "data-protocols=\"modbus-tcp\" style=\"{PF_STYLE}\" hidden disabled>"
        )),
        "{html}"
    );
    assert!(html.contains("<input name=\"instance\" value=\"4242\">"));
    assert!(html.contains("<option value=\"bacnet\" selected>"));
    // No bus yet: the RTU fields say to add one.
    assert!(html.contains(DevMsg::NoBusYet.texts().0));
    let zh = device_form_html(Lang::ZhCn, "/devices", &Form::new(), &[], DevMsg::Add);
    assert!(zh.contains("设备实例号") && zh.contains("<option value=\"modbus-tcp\" selected>"));
}

#[test]
fn a_select_keeps_a_value_it_does_not_offer() {
    let html = select(
        "layout",
        "Layout",
        &same(edit::LAYOUTS),
        "ABCDEFGH",
        Some("-"),
    );
    assert!(html.contains("<option value=\"ABCDEFGH\" selected>ABCDEFGH</option>"));
    assert!(html.starts_with("<label>Layout<select name=\"layout\"><option value=\"\">-</option>"));
    let html = select("layout", "Layout", &same(edit::LAYOUTS), "CDAB", None);
    assert!(html.contains("<option value=\"CDAB\" selected>"));
    assert_eq!(html.matches("selected").count(), 1);
}

#[test]
fn the_live_view_speaks_the_page_language() {
    let snap = FloorSnapshot {
        site: "s".into(),
        timezone: "UTC".into(),
        now: String::new(),
        now_ms: 0,
        cloud: "none",
        rooms: Vec::new(),
        devices: vec![device("a", "online", 0)],
        buses: Vec::new(),
    };
    let view = live_view(&snap, &FailureWindow::default(), Lang::ZhCn);
    assert_eq!(view.words["offline"], "离线");
    assert_eq!(view.words["yes"], "是");
    let json = serde_json::to_value(&view).expect("json");
    assert_eq!(json["devices"][0]["id"], "a");
    assert_eq!(json["devices"][0]["condition"], "online");
}

#[test]
fn removal_buttons_have_their_own_result_slot() {
    let html = button_form("/devices/a/points/b/remove", "Remove", "Remove a/b?");
    assert!(html.contains("data-result=\"rm-devices-a-points-b-remove\""));
    assert!(html.contains("id=\"rm-devices-a-points-b-remove\""));
    assert!(html.contains("data-confirm=\"Remove a/b?\""));
}

#[test]
fn every_text_has_both_languages() {
    for m in DevMsg::ALL {
        let (en, zh) = m.texts();
        assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
        let names = |t: &str| -> Vec<String> {
            let mut v: Vec<String> = t
                .split('{')
                .skip(1)
                .filter_map(|r| r.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(en), names(zh), "{m:?}: the same placeholders");
    }
}
