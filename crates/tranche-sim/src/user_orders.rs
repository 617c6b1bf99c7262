//! The account owner's own orders: limits, stops and stop-limits resting when the simulation
//! starts, placed outside Tranche. They are what Alpaca's wash-trade rule fires against and what
//! Tranche must never cancel or replace (the referee counts any attempt).
//!
//! Invariants: a user order passes the same validation as any order (a config asking for more
//! than the account can hold is refused when the simulator starts); its client order id is
//! `user-<n>`, never a Tranche id; an untriggered stop is open but not in the book, and works
//! as a market (or, for a stop-limit, a limit) order from the moment the market reaches its
//! stop price (a sell stop when the bid falls to it, a buy stop when the ask rises to it).

use tranche_domain::{ClientOrderId, OrderRequest, OrderStatus, OrderType};

use crate::core::Sim;

impl Sim {
    /// Places the configured user orders; the error names the order the broker refused.
    pub(crate) fn place_user_orders(&mut self) -> Result<(), String> {
        let orders = self.config.account.open_orders.clone();
        for (n, user) in orders.iter().enumerate() {
            let id = ClientOrderId::from_broker(format!("user-{n}"));
            let request = OrderRequest::day(id, user.symbol.clone(), user.side, user.qty, user.limit_price);
            let placed =
                self.submit_as_user(&request).map_err(|e| format!("the user's order {n} ({}): {e}", user.symbol))?;
            let Some(stop) = user.stop_price else { continue };
            self.make_stop(&placed.id, stop).ok_or("a placed order is indexed")?;
        }
        Ok(())
    }

    /// Turns a just-placed (not yet routed) order into an untriggered stop at `stop`: a stop
    /// when it has no limit, a stop-limit when it has one. `None` when the order is unknown.
    pub(crate) fn make_stop(
        &mut self,
        id: &tranche_domain::BrokerOrderId,
        stop: tranche_domain::Price,
    ) -> Option<tranche_domain::Order> {
        let index = self.by_id.get(id).copied()?;
        let slot = self.orders[index].slot;
        let side = self.orders[index].order.side;
        let stop_ticks = self.slots[slot].market.to_ticks(stop, side.opposite());
        let o = &mut self.orders[index];
        o.stop_ticks = stop_ticks;
        o.order.stop_price = Some(stop);
        o.order.order_type = if o.order.limit_price.is_some() { OrderType::StopLimit } else { OrderType::Stop };
        Some(o.order.clone())
    }

    /// Places a stop (no limit in `request`) or a stop-limit order: validated and placed as the
    /// market or limit order it becomes once triggered, resting untriggered until the market
    /// reaches `stop` (a sell stop when the bid falls to it, a buy stop when the ask rises to it).
    ///
    /// # Errors
    /// As [`Sim::submit`].
    pub fn submit_stop(
        &mut self,
        request: &OrderRequest,
        stop: tranche_domain::Price,
    ) -> Result<tranche_domain::Order, crate::error::SimError> {
        let mut working = request.clone();
        working.order_type = if request.limit_price.is_some() { OrderType::Limit } else { OrderType::Market };
        self.submit_stopped_at(&working, Some(stop))
    }

    /// Stops of `slot` whose stop price the market reached start working.
    pub(crate) fn trigger_stops(&mut self, slot: usize) {
        let market = &self.slots[slot].market;
        let (bid, ask) = (market.bid, market.ask);
        let triggered: Vec<usize> = self
            .open
            .iter()
            .copied()
            .filter(|&i| self.orders[i].slot == slot && self.orders[i].order.status == OrderStatus::New)
            .filter(|&i| match (self.orders[i].stop_ticks, self.orders[i].order.side) {
                (Some(stop), tranche_domain::Side::Sell) => bid <= stop,
                (Some(stop), tranche_domain::Side::Buy) => ask >= stop,
                (None, _) => false,
            })
            .collect();
        for i in triggered {
            self.orders[i].stop_ticks = None;
            // Stopped out of the book: remove before it works again as a market/limit order.
            self.slots[slot].resting.retain(|&r| r != i);
            let cid = self.orders[i].order.client_order_id.clone();
            self.record(|| format!("stop triggered {cid}"));
            if self.orders[i].order.side == tranche_domain::Side::Buy && self.orders[i].limit_ticks.is_none() {
                // A market buy works under Alpaca's collar, the price it reserved at.
                let collar = tranche_domain::Price::new(self.orders[i].reserve_price);
                self.orders[i].limit_ticks = self.slots[slot].market.to_ticks(collar, tranche_domain::Side::Buy);
            }
            self.take_liquidity(i);
            if self.orders[i].order.status.is_terminal() {
                continue;
            }
            self.rest(i);
        }
    }

    /// True for an order that is an untriggered stop (it must not match as a resting limit).
    pub(crate) fn is_untriggered_stop(&self, i: usize) -> bool {
        self.orders[i].stop_ticks.is_some()
    }
}
