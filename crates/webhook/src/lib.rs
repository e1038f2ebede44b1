//! Mutating admission webhook (AdmissionReview v1 over HTTPS) for the injector.
