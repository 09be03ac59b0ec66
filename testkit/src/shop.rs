//! A small contended shop, built through the public API from a seed: few
//! items with little stock, users with little credit, orders of one to three
//! lines. And its audit: stock and credit removed are exactly what the paid
//! orders account for. The fault and cluster tests share both.

use futures::{stream, StreamExt};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;

use crate::http::Client;

/// The shop's shape.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub seed: u64,
    pub items: usize,
    /// Starting stock of every item.
    pub stock: i64,
    /// Prices are drawn from 1..=max_price.
    pub max_price: i64,
    pub users: usize,
    /// Starting credit of every user.
    pub credit: i64,
    pub orders: usize,
    /// Each line's quantity is drawn from 1..=max_quantity.
    pub max_quantity: i64,
}

pub struct Shop {
    pub spec: Spec,
    /// (item id, price)
    pub items: Vec<(String, i64)>,
    pub users: Vec<String>,
    pub orders: Vec<Order>,
}

pub struct Order {
    pub id: String,
    /// Index into [`Shop::users`].
    pub user: usize,
    /// (index into [`Shop::items`], quantity), one per addItem call.
    pub lines: Vec<(usize, i64)>,
}

/// What [`Shop::audit`] read, and what did not add up.
pub struct Audit {
    /// Every order as `GET /orders/find` returned it, in shop order.
    pub found: Vec<Value>,
    /// Units removed per item by the paid orders.
    pub sold: Vec<i64>,
    /// Credit removed per user by the paid orders.
    pub spent: Vec<i64>,
    pub problems: Vec<String>,
}

impl Shop {
    /// Builds the shop; the same seed gives the same prices and orders.
    pub async fn build(c: &Client, spec: Spec) -> Shop {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let prices: Vec<i64> = (0..spec.items)
            .map(|_| rng.random_range(1..=spec.max_price))
            .collect();
        let items: Vec<(String, i64)> = stream::iter(prices)
            .map(|price| async move {
                let id = c.create_item(price).await;
                c.add_stock(&id, spec.stock).await;
                (id, price)
            })
            .buffered(spec.items)
            .collect()
            .await;
        let users: Vec<String> = stream::iter(0..spec.users)
            .map(|_| c.create_user(spec.credit))
            .buffered(16)
            .collect()
            .await;
        let plans: Vec<(usize, Vec<(usize, i64)>)> = (0..spec.orders)
            .map(|_| {
                let lines = (0..rng.random_range(1..=3))
                    .map(|_| {
                        (
                            rng.random_range(0..spec.items),
                            rng.random_range(1..=spec.max_quantity),
                        )
                    })
                    .collect();
                (rng.random_range(0..spec.users), lines)
            })
            .collect();
        let orders = stream::iter(plans)
            .map(|(user, lines)| {
                let (c, items, users) = (c.clone(), &items, &users);
                async move {
                    let id = c.create_order(users[user].as_str()).await;
                    for &(item, quantity) in &lines {
                        c.add_item(&id, &items[item].0, quantity).await;
                    }
                    Order { id, user, lines }
                }
            })
            .buffered(16)
            .collect()
            .await;
        Shop {
            spec,
            items,
            users,
            orders,
        }
    }

    /// What an order costs, from its lines.
    pub fn cost(&self, order: &Order) -> i64 {
        order.lines.iter().map(|&(i, q)| self.items[i].1 * q).sum()
    }

    /// Reads every order, item and user through the API: every order's
    /// total is what its lines cost, nothing is negative, and the stock and
    /// credit removed are exactly what the paid orders account for.
    pub async fn audit(&self, c: &Client) -> Audit {
        let found: Vec<Value> = stream::iter(&self.orders)
            .map(|o| c.order(&o.id))
            .buffered(16)
            .collect()
            .await;
        let mut problems = Vec::new();
        let mut sold = vec![0i64; self.items.len()];
        let mut spent = vec![0i64; self.users.len()];
        for (o, f) in self.orders.iter().zip(&found) {
            let cost = self.cost(o);
            if f["total_cost"].as_i64() != Some(cost) {
                problems.push(format!(
                    "order {}: total_cost {}, lines say {cost}",
                    o.id, f["total_cost"]
                ));
            }
            if f["paid"] == true {
                for &(i, q) in &o.lines {
                    sold[i] += q;
                }
                spent[o.user] += cost;
            }
        }
        for (i, (item, _)) in self.items.iter().enumerate() {
            let stock = c.stock(item).await;
            if stock < 0 {
                problems.push(format!("item {item}: negative stock {stock}"));
            }
            if self.spec.stock - stock != sold[i] {
                problems.push(format!(
                    "item {item}: {} units removed, paid orders account for {}",
                    self.spec.stock - stock,
                    sold[i]
                ));
            }
        }
        for (u, user) in self.users.iter().enumerate() {
            let credit = c.credit(user).await;
            if credit < 0 {
                problems.push(format!("user {user}: negative credit {credit}"));
            }
            if self.spec.credit - credit != spent[u] {
                problems.push(format!(
                    "user {user}: {} credit removed, paid orders account for {}",
                    self.spec.credit - credit,
                    spent[u]
                ));
            }
        }
        Audit {
            found,
            sold,
            spent,
            problems,
        }
    }
}
