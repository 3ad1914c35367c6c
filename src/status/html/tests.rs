//! Tests of the status page's HTML: escaping, sparklines, number formatting.

use super::*;

#[test]
fn markup_in_a_string_becomes_text() {
    let mut out = String::new();
    escape("a<script>alert('x')</script>&\"", &mut out);
    assert_eq!(
        out,
        "a&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
    );
}

#[test]
fn a_sparkline_ends_at_the_right_edge_and_breaks_at_gaps() {
    let d = spark_path(&[Some(0.0), Some(2.0), None, Some(1.0)], 2.0);
    assert_eq!(d, "M86 19.0L87 1.0M89 10.0");
    assert_eq!(spark_path(&[Some(0.0)], 0.0), "M89 19.0");
    let full = spark_path(&vec![Some(1.0); SAMPLES], 1.0);
    assert!(full.starts_with("M0 1.0L1 1.0"), "{full}");
}

#[test]
fn numbers_are_short() {
    assert_eq!(rate(Some(0.004)), "<0.01");
    assert_eq!(rate(Some(1.234)), "1.23");
    assert_eq!(rate(Some(1234.4)), "1234");
    assert_eq!(secs(Some(0.3204)), "320 ms");
    assert_eq!(secs(Some(2.5)), "2.50 s");
    assert_eq!(ratio(Some(0.25)), "25.0 %");
    assert_eq!(bytes(3_325_000_000), "3.1 GiB");
    assert_eq!(age(3.2), "3 s ago");
}
