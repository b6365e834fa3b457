"""Who is calling: identities, users and their tokens, sign-in throttling, browser sessions."""
