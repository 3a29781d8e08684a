//! Weighted agent bindings on a phone number: the A/B split.

use super::{AgentId, AgentVersionRef};

/// Tolerance on the sum of weights, so that 1/3 + 1/3 + 1/3 passes.
const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct AgentWeight {
    pub agent_id: AgentId,
    pub weight: f64,
    pub agent_version: Option<AgentVersionRef>,
}

/// A non-empty list of agents whose weights are each in (0, 1] and sum to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentWeights(Vec<AgentWeight>);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error("[{index}].weight must be in (0, 1], got {weight}")]
    WeightOutOfRange { index: usize, weight: f64 },
    #[error("weights must sum to 1, they sum to {0}")]
    BadSum(f64),
    #[error("[{index}].agent_id {raw:?} is not an agent id")]
    BadAgentId { index: usize, raw: String },
}

impl AgentWeights {
    /// `entries` are `(agent_id, weight, version)` as they came off the wire. An empty list
    /// means "no agent bound" and is represented by `None`.
    pub fn parse(entries: impl IntoIterator<Item = (String, f64, Option<AgentVersionRef>)>) -> Result<Option<Self>, WeightsError> {
        let mut parsed = Vec::new();
        for (index, (raw_id, weight, agent_version)) in entries.into_iter().enumerate() {
            let agent_id = AgentId::parse(&raw_id).ok_or(WeightsError::BadAgentId { index, raw: raw_id })?;
            if !(weight > 0.0 && weight <= 1.0) {
                return Err(WeightsError::WeightOutOfRange { index, weight });
            }
            parsed.push(AgentWeight { agent_id, weight, agent_version });
        }
        if parsed.is_empty() {
            return Ok(None);
        }
        let sum: f64 = parsed.iter().map(|entry| entry.weight).sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(WeightsError::BadSum(sum));
        }
        Ok(Some(Self(parsed)))
    }

    pub fn entries(&self) -> &[AgentWeight] {
        &self.0
    }

    /// Picks an entry with probability proportional to its weight. `roll` is uniform in
    /// [0, 1); it is an input so that the choice is testable.
    pub fn pick(&self, roll: f64) -> &AgentWeight {
        let mut cumulative = 0.0;
        for entry in &self.0 {
            cumulative += entry.weight;
            if roll < cumulative {
                return entry;
            }
        }
        // Rounding can leave the last cumulative sum a hair below `roll`.
        self.0.last().expect("AgentWeights is never empty")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("agent_{n:032x}")
    }

    #[test]
    fn thirds_sum_to_one_within_tolerance() {
        let third = 1.0 / 3.0;
        let weights = AgentWeights::parse([(id(1), third, None), (id(2), third, None), (id(3), third, None)]).unwrap().unwrap();
        assert_eq!(weights.entries().len(), 3);
    }

    #[test]
    fn weights_outside_the_unit_interval_or_not_summing_to_one_are_refused() {
        assert_eq!(
            AgentWeights::parse([(id(1), 0.0, None), (id(2), 1.0, None)]),
            Err(WeightsError::WeightOutOfRange { index: 0, weight: 0.0 })
        );
        assert_eq!(AgentWeights::parse([(id(1), 0.5, None), (id(2), 0.4, None)]), Err(WeightsError::BadSum(0.9)));
        assert_eq!(AgentWeights::parse([]), Ok(None));
    }

    #[test]
    fn pick_follows_the_cumulative_weights() {
        let weights = AgentWeights::parse([(id(1), 0.8, None), (id(2), 0.2, None)]).unwrap().unwrap();
        assert_eq!(weights.pick(0.0).agent_id.as_str(), id(1));
        assert_eq!(weights.pick(0.79).agent_id.as_str(), id(1));
        assert_eq!(weights.pick(0.8).agent_id.as_str(), id(2));
        assert_eq!(weights.pick(0.999_999_9).agent_id.as_str(), id(2));
    }

    #[test]
    fn an_eighty_twenty_split_lands_near_eighty_twenty() {
        let weights = AgentWeights::parse([(id(1), 0.8, None), (id(2), 0.2, None)]).unwrap().unwrap();
        let n_rolls = 10_000;
        let n_first =
            (0..n_rolls).map(|i| f64::from(i) / f64::from(n_rolls)).filter(|&roll| weights.pick(roll).agent_id.as_str() == id(1)).count();
        assert_eq!(n_first, 8_000);
    }
}
