"""Training both branches, distilling the fast student, and the short GPU slot recipe."""
