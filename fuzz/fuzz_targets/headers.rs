//! Every header parser of `tower_perf::headers` on arbitrary bytes: no
//! panic, and what parses writes back to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_perf::headers::{
    AcceptEncoding, CacheControl, ContentCoding, EntityTag, EntityTagList, HttpDate,
};

fuzz_target!(|data: &[u8]| {
    let cc = CacheControl::parse(data);
    let again = CacheControl::parse(cc.to_header_value().as_bytes());
    assert_eq!(cc, again, "Cache-Control round trip");

    let ae = AcceptEncoding::parse(data);
    let _ = ae.negotiate(&[
        ContentCoding::Gzip,
        ContentCoding::Deflate,
        ContentCoding::Br,
    ]);
    let _ = AcceptEncoding::parse(ae.to_header_value().as_bytes());

    if let Ok(tag) = EntityTag::parse(data) {
        assert_eq!(
            EntityTag::parse(tag.to_header_value().as_bytes()).ok(),
            Some(tag)
        );
    }
    if let Ok(list) = EntityTagList::parse(data) {
        assert!(EntityTagList::parse(list.to_header_value().as_bytes()).is_ok());
    }
    if let Ok(date) = HttpDate::parse(data) {
        assert_eq!(
            HttpDate::parse(date.to_header_value().as_bytes()).ok(),
            Some(date)
        );
    }
});
