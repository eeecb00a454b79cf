/** The values the client hands to the application. */
export {};
