/// Account endpoints: registration, login and sessions, the account itself,
/// devices, profiles, account data, presence, filters, capabilities and the user directory,
/// in the order of the specification's client-server API.
enum AccountEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        Capabilities.register(&routes)
        Filters.register(&routes)
        Login.register(&routes)
        Registration.register(&routes)
        AccountManagement.register(&routes)
        SharedSecretRegistration.register(&routes)
        Profiles.register(&routes)
        UserDirectory.register(&routes)
        Presence.register(&routes)
        Devices.register(&routes)
        AccountData.register(&routes)
        PushRules.register(&routes)
        Whois.register(&routes)
        Pushers.register(&routes)
    }
}
