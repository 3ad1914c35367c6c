//! A reload's instances, old against new: which continue on their listener, which start, which
//! stop. A pure function of the two lists, so that the rule is in one place and tested.
//!
//! An instance continues when its `proxy_listen_addr` is the same: it keeps its listener and
//! its open connections, whatever else changed (with the same `ollama_url` and store shape it
//! keeps its counters too, see `InstanceState::next`). Instances on the same address (port 0,
//! in tests) pair up in file order.

use crate::config::Instance;

/// What a reload does with the instances.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// (old index, new index): continues on its listener with the new settings.
    pub(crate) kept: Vec<(usize, usize)>,
    /// New indices: bind, then serve.
    pub(crate) added: Vec<usize>,
    /// Old indices: stop accepting, let in-flight requests finish, push the last samples.
    pub(crate) removed: Vec<usize>,
}

/// The plan from `old` to `new`.
pub(crate) fn plan(old: &[Instance], new: &[Instance]) -> Plan {
    let mut taken = vec![false; old.len()];
    let mut plan = Plan::default();
    for (j, n) in new.iter().enumerate() {
        let same =
            (0..old.len()).find(|&i| !taken[i] && old[i].proxy_listen_addr == n.proxy_listen_addr);
        match same {
            Some(i) => {
                taken[i] = true;
                plan.kept.push((i, j));
            }
            None => plan.added.push(j),
        }
    }
    plan.removed = (0..old.len()).filter(|&i| !taken[i]).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(addrs: &[&str]) -> Vec<Instance> {
        let text: String = addrs
            .iter()
            .map(|a| format!("[[instances]]\nproxy_listen_addr = \"{a}\"\n"))
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "ollama-tap-plan-{}-{}",
            std::process::id(),
            addrs.join("_").replace([':', '.'], "-")
        ));
        std::fs::create_dir_all(dir.join("input.ollama")).unwrap();
        std::fs::write(dir.join("config.toml"), "").unwrap();
        std::fs::write(dir.join("input.ollama/ollama.toml"), text).unwrap();
        let loaded = crate::config::load(&dir, &Default::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        loaded.config.instances
    }

    #[test]
    fn an_instance_on_the_same_address_continues_others_start_and_stop() {
        let old = instances(&["127.0.0.1:8000", "127.0.0.1:8001"]);
        let new = instances(&["127.0.0.1:8002", "127.0.0.1:8000"]);
        let p = plan(&old, &new);
        assert_eq!(p.kept, [(0, 1)]);
        assert_eq!(p.added, [0]);
        assert_eq!(p.removed, [1]);
    }

    #[test]
    fn instances_on_port_zero_pair_up_in_order() {
        let old = instances(&["127.0.0.1:0", "127.0.0.1:0"]);
        let new = instances(&["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"]);
        let p = plan(&old, &new);
        assert_eq!(p.kept, [(0, 0), (1, 1)]);
        assert_eq!((p.added, p.removed), (vec![2], vec![]));
        assert_eq!(plan(&new, &old).removed, [2]);
    }

    #[test]
    fn the_same_list_keeps_everything() {
        let list = instances(&["127.0.0.1:8000", "[::1]:8001"]);
        let p = plan(&list, &list);
        assert_eq!(p.kept, [(0, 0), (1, 1)]);
        assert!(p.added.is_empty() && p.removed.is_empty());
    }
}
