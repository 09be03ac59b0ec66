//! How the saga's messages look on the wire, as plain records (the encoding
//! every earlier version wrote): the typed messages convert from and to
//! them, so a message still in a stream during an upgrade keeps its meaning.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepCommand {
    pub saga_id: Uuid,
    pub step: Step,
    #[serde(default)]
    pub lines: Vec<(String, i64)>,
}

impl From<super::StepCommand> for StepCommand {
    fn from(c: super::StepCommand) -> Self {
        let step = c.step();
        let lines = match c.action {
            StepAction::Reserve { items } => items
                .into_iter()
                .map(|(item, q)| (item.into_string(), q.get()))
                .collect(),
            StepAction::Charge { user_id, amount } => {
                vec![(user_id.into_string(), amount.get())]
            }
            StepAction::Release | StepAction::Refund => Vec::new(),
        };
        StepCommand {
            saga_id: c.saga_id,
            step,
            lines,
        }
    }
}

impl TryFrom<StepCommand> for super::StepCommand {
    type Error = Undecodable;

    fn try_from(c: StepCommand) -> Result<Self, Undecodable> {
        let action = match c.step {
            Step::Reserve => StepAction::Reserve {
                items: c
                    .lines
                    .into_iter()
                    .map(|(item, q)| Ok((ItemId::from(item), Quantity::try_from(q)?)))
                    .collect::<Result<_, OutOfBounds>>()?,
            },
            Step::Charge => match <[(String, i64); 1]>::try_from(c.lines) {
                Ok([(user, amount)]) => StepAction::Charge {
                    user_id: UserId::from(user),
                    amount: Amount::try_from(amount)?,
                },
                Err(lines) => return Err(Undecodable::ChargeLines(lines.len())),
            },
            step @ (Step::Release | Step::Refund) => {
                if !c.lines.is_empty() {
                    return Err(Undecodable::CompensationWithLines {
                        step: step.as_str(),
                        lines: c.lines.len(),
                    });
                }
                if step == Step::Release {
                    StepAction::Release
                } else {
                    StepAction::Refund
                }
            }
        };
        Ok(super::StepCommand {
            saga_id: c.saga_id,
            action,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutOutcome {
    pub request_id: Uuid,
    pub order_id: OrderId,
    pub succeeded: bool,
    pub reason: Option<FailureReason>,
    /// Absent from messages of order-svc versions before it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<super::CheckoutOutcome> for CheckoutOutcome {
    fn from(o: super::CheckoutOutcome) -> Self {
        CheckoutOutcome {
            request_id: o.request_id,
            order_id: o.order_id,
            succeeded: o.verdict.succeeded(),
            reason: o.verdict.reason(),
            completed_at: o.completed_at,
        }
    }
}

impl TryFrom<CheckoutOutcome> for super::CheckoutOutcome {
    type Error = Undecodable;

    fn try_from(o: CheckoutOutcome) -> Result<Self, Undecodable> {
        Ok(super::CheckoutOutcome {
            request_id: o.request_id,
            order_id: o.order_id,
            verdict: Verdict::from_parts(o.succeeded, o.reason)?,
            completed_at: o.completed_at,
        })
    }
}
