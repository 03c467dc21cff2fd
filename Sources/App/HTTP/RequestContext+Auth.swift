import Matrix

/// Who may call a handler, said once at its top: `requireUser` for any signed-in user,
/// `requireSelf` for endpoints under `/user/{userId}/...` that act only on the requester's
/// own account, `requireAdmin` for the server's administrators.
extension RequestContext {
    /// The requester named by the access token: 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`
    /// without a valid one; guests get 403 `M_GUEST_ACCESS_FORBIDDEN` unless `allowGuests`.
    func requireUser(allowGuests: Bool = true) async throws -> Requester {
        try await app.accounts.authenticate(self, allowGuests: allowGuests)
    }

    /// The requester, who must be the user the path parameter `userId` names: 403
    /// `M_FORBIDDEN` with `refusal` otherwise (a malformed `userId` is 400 `M_INVALID_PARAM`).
    func requireSelf(_ refusal: String, allowGuests: Bool = true) async throws -> Requester {
        let requester = try await requireUser(allowGuests: allowGuests)
        guard try UserID(parsing: parameter("userId")) == requester.userID else {
            throw MatrixError(.forbidden, refusal)
        }
        return requester
    }

    /// The requester, who must be a server admin (the flag the session cached from the
    /// store): 403 `M_FORBIDDEN` otherwise, as Synapse's admin API answers.
    func requireAdmin() async throws -> Requester {
        let requester = try await requireUser()
        guard requester.isAdmin else { throw MatrixError(.forbidden, "You are not a server admin") }
        return requester
    }
}
