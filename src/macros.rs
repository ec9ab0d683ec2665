/// Generates `get_ref`, `get_mut` and `into_inner` for a service with an
/// `inner` field.
#[allow(unused_macros)]
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[allow(unused_imports)]
pub(crate) use define_inner_service_accessors;
