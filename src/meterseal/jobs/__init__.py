"""Confidential batch jobs with deadlines: Asperathos' Manager, Monitor and Controller on Dask."""
