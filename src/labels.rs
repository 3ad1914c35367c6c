//! TEMPORARY STUB (replaced by the labels module).
use std::collections::BTreeMap;
pub struct Labeler {
    inst: BTreeMap<String, String>,
    host: Option<String>,
}
impl Labeler {
    pub fn new(
        i: &BTreeMap<String, String>,
        _g: &BTreeMap<String, String>,
        host: Option<String>,
    ) -> Self {
        Labeler {
            inst: i.clone(),
            host,
        }
    }
    pub fn apply(&self, labels: &mut Vec<(String, String)>) {
        for (k, v) in &self.inst {
            labels.retain(|(n, _)| n != k);
            labels.push((k.clone(), v.clone()));
        }
        if let Some(h) = &self.host {
            labels.push(("agent_hostname".into(), h.clone()));
        }
        labels.sort();
    }
}
pub fn resolve_hostname(c: &str, _w: Option<&str>) -> String {
    c.to_string()
}
pub fn expand_all(m: &BTreeMap<String, String>, _w: Option<&str>) -> BTreeMap<String, String> {
    m.clone()
}
