"""`egocache benchmark`: cost (GFLOPs, parameters, latency) and accuracy of the teacher and every student, as a report."""
