//! Fuzzes what a BACnet/IP datagram from the field goes through before it becomes a point value: BVLL (Annex J.2), NPDU (Clause 6.2), APDU (Clause 20.1), the answers the driver reads (ReadProperty-ACK 15.5, ReadPropertyMultiple-ACK 15.7, COV notifications 13.6/13.7, I-Am 16.10) and the mapping of their values onto points. Nothing may panic.
//!
//! Seeds (a ReadProperty-ACK, an RPM-ACK with a per-property error, confirmed and unconfirmed COV
//! notifications, an I-Am, a routed answer) are in `seeds/bacnet_field_frame`:
//! `cargo +nightly fuzz run bacnet_field_frame corpus/bacnet_field_frame seeds/bacnet_field_frame`.
#![no_main]

use bacnet_encoding::apdu::{Apdu, decode_apdu};
use bacnet_encoding::npdu::decode_npdu;
use bacnet_services::cov::COVNotificationRequest;
use bacnet_services::read_property::ReadPropertyACK;
use bacnet_services::rpm::ReadPropertyMultipleACK;
use bacnet_services::who_is::IAmRequest;
use bacnet_transport::bvll::decode_bvll;
use bacnet_types::enums::{ConfirmedServiceChoice, UnconfirmedServiceChoice};
use drivers::bacnet::{ValueKind, decode_property_values};
use libfuzzer_sys::fuzz_target;

const KINDS: [ValueKind; 5] = [
    ValueKind::Real,
    ValueKind::Unsigned,
    ValueKind::Enumerated,
    ValueKind::Boolean,
    ValueKind::Binary,
];

fn values(bytes: &[u8]) {
    for value in decode_property_values(bytes) {
        for kind in KINDS {
            if let Some(v) = kind.to_value(&value) {
                // What was read can be written back (or is refused, not a panic).
                let _ = kind.to_property_value(v);
            }
        }
    }
}

fn cov(bytes: &[u8]) {
    if let Ok(notification) = COVNotificationRequest::decode(bytes) {
        for value in &notification.list_of_values {
            values(&value.value);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(bvll) = decode_bvll(data) else { return };
    let Some(npdu) = bvll.npdu() else { return };
    let Ok(npdu) = decode_npdu(npdu) else { return };
    if npdu.is_network_message() {
        return;
    }
    let Ok(apdu) = decode_apdu(npdu.payload) else {
        return;
    };
    match apdu {
        Apdu::ComplexAck(ack) if ack.service_choice == ConfirmedServiceChoice::READ_PROPERTY => {
            if let Ok(rp) = ReadPropertyACK::decode(&ack.service_ack) {
                values(&rp.property_value);
            }
        }
        Apdu::ComplexAck(ack)
            if ack.service_choice == ConfirmedServiceChoice::READ_PROPERTY_MULTIPLE =>
        {
            if let Ok(rpm) = ReadPropertyMultipleACK::decode(&ack.service_ack) {
                for result in &rpm.list_of_read_access_results {
                    for element in &result.list_of_results {
                        if let Some(bytes) = &element.property_value {
                            values(bytes);
                        }
                    }
                }
            }
        }
        Apdu::ConfirmedRequest(request)
            if request.service_choice == ConfirmedServiceChoice::CONFIRMED_COV_NOTIFICATION =>
        {
            cov(&request.service_request);
        }
        Apdu::UnconfirmedRequest(request)
            if request.service_choice == UnconfirmedServiceChoice::UNCONFIRMED_COV_NOTIFICATION =>
        {
            cov(&request.service_request);
        }
        Apdu::UnconfirmedRequest(request)
            if request.service_choice == UnconfirmedServiceChoice::I_AM =>
        {
            let _ = IAmRequest::decode(&request.service_request);
        }
        _ => {}
    }
});
