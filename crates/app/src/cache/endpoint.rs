//! The one list of cacheable endpoints. Each has its key family (`keys`), its TTL setting, its label in
//! `cache_requests_total{endpoint}` and in `/api/stats`; [`ByEndpoint`] holds one value per endpoint.

/// The cacheable endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Categories,
    Search,
    TopProducts,
    Product,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Endpoint::Categories, Endpoint::Search, Endpoint::TopProducts, Endpoint::Product];

    /// The `endpoint` label of the metrics and the key of `ttl_secs` in `/api/stats`.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Categories => "categories",
            Endpoint::Search => "products_search",
            Endpoint::TopProducts => "top_products",
            Endpoint::Product => "product",
        }
    }
}

/// One value per endpoint (a TTL, a set of counters), found by a `match`, never by an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByEndpoint<T> {
    categories: T,
    search: T,
    top_products: T,
    product: T,
}

impl<T> ByEndpoint<T> {
    pub fn new(mut value: impl FnMut(Endpoint) -> T) -> Self {
        ByEndpoint {
            categories: value(Endpoint::Categories),
            search: value(Endpoint::Search),
            top_products: value(Endpoint::TopProducts),
            product: value(Endpoint::Product),
        }
    }

    pub fn get(&self, e: Endpoint) -> &T {
        match e {
            Endpoint::Categories => &self.categories,
            Endpoint::Search => &self.search,
            Endpoint::TopProducts => &self.top_products,
            Endpoint::Product => &self.product,
        }
    }

    /// `(endpoint, value)` in the order of [`Endpoint::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Endpoint, &T)> {
        Endpoint::ALL.into_iter().map(|e| (e, self.get(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_has_its_own_value() {
        let labels = ByEndpoint::new(Endpoint::label);
        for e in Endpoint::ALL {
            assert_eq!(*labels.get(e), e.label());
        }
        assert_eq!(labels.iter().count(), 4);
    }
}
