//! The booking API: create, change and cancel bookings and series, import calendars.
