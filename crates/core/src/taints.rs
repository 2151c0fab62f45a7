//! Taints and tolerations as upstream's v1 helpers read them: whether a toleration
//! tolerates a taint (`Toleration.ToleratesTaint`), and which tolerations a pod uses on
//! a node's taints (`GetMatchingTolerations`), for the scheduler and the
//! taint-eviction controller alike.

use keelson_api::k8s_openapi::api::core::v1::{Taint, Toleration};

/// `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether every one of `taints` is tolerated, and the tolerations that tolerate them
/// (upstream's `GetMatchingTolerations`: the first toleration that fits each taint).
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> (bool, Vec<&'a Toleration>) {
    let mut used = Vec::new();
    for taint in taints {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return (false, Vec::new()),
        }
    }
    (true, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()).filter(|k: &String| !k.is_empty()),
            value: Some(value.into()).filter(|k: &String| !k.is_empty()),
            effect: Some(effect.into()).filter(|k: &String| !k.is_empty()),
            toleration_seconds: None,
        }
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|k: &String| !k.is_empty()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "", "gpu", ""), &t));
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", ""), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("", "Exists", "", "NoExecute"), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
    }

    #[test]
    fn every_taint_needs_a_toleration() {
        let taints = [taint("a", "", "NoExecute"), taint("b", "", "NoExecute")];
        let tolerations =
            [toleration("a", "Exists", "", ""), toleration("b", "Exists", "", "NoExecute")];
        let (all, used) = matching_tolerations(&taints, &tolerations);
        assert!(all);
        assert_eq!(used.len(), 2);
        assert!(!matching_tolerations(&taints, &tolerations[..1]).0);
        assert!(matching_tolerations(&[], &[]).0);
    }
}
